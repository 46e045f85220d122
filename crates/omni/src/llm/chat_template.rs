//! Chat templates: the Jinja template in `tokenizer.chat_template`, rendered with
//! minijinja the way Hugging Face's `apply_chat_template` renders it (`messages`,
//! `add_generation_prompt`, `bos_token`, `eos_token`, `raise_exception`), plus the few
//! Python string methods templates commonly call.

use std::collections::BTreeMap;

use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, Error as JinjaError, ErrorKind};

use crate::{Error, Result};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`; a syntax error is reported here, not at the first chat.
    pub fn new(source: &str) -> Result<Self> {
        let mut env = Environment::new();
        // Hugging Face renders chat templates with trim_blocks and lstrip_blocks.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::Tokenizer(format!("chat template: {e}")))?;
        env.set_syntax(syntax);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Value, JinjaError> {
                Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_function("strftime_now", |_fmt: String| -> String { String::new() });
        env.set_unknown_method_callback(python_methods);
        // transformers' `{% generation %}` only marks assistant text for training masks;
        // what it encloses renders unchanged.
        let source = source
            .replace("{% generation %}", "")
            .replace("{% endgeneration %}", "");
        env.add_template_owned("chat", source)
            .map_err(|e| Error::Tokenizer(format!("chat template: {e}")))?;
        Ok(Self { env })
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the
    /// assistant's reply begins.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        bos: &str,
        eos: &str,
    ) -> Result<String> {
        let messages = messages
            .iter()
            .map(|m| message_value(m, Value::from(m.content.as_str())))
            .collect();
        self.render_values(messages, add_generation_prompt, bos, eos)
    }

    /// Renders `messages` for a multimodal processor's template, whose message content
    /// is a list of parts: each `placeholder` in a message becomes an `{"type": "image"}`
    /// part, the text around it `{"type": "text", "text": …}` parts, in order.
    pub fn render_with_parts(
        &self,
        messages: &[Message],
        placeholder: &str,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let messages = messages
            .iter()
            .map(|m| {
                let mut parts = Vec::new();
                for (i, text) in m.content.split(placeholder).enumerate() {
                    if i > 0 {
                        parts.push(Value::from(BTreeMap::from([("type", "image")])));
                    }
                    if !text.is_empty() {
                        parts.push(Value::from(BTreeMap::from([
                            ("type", Value::from("text")),
                            ("text", Value::from(text.to_string())),
                        ])));
                    }
                }
                message_value(m, Value::from(parts))
            })
            .collect();
        self.render_values(messages, add_generation_prompt, "", "")
    }

    fn render_values(
        &self,
        messages: Vec<Value>,
        add_generation_prompt: bool,
        bos: &str,
        eos: &str,
    ) -> Result<String> {
        let mut ctx = BTreeMap::new();
        ctx.insert("messages", Value::from(messages));
        ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
        ctx.insert("bos_token", Value::from(bos));
        ctx.insert("eos_token", Value::from(eos));
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| Error::Tokenizer(format!("chat template: {e}")))?;
        tmpl.render(Value::from(ctx))
            .map_err(|e| Error::InvalidInput(format!("chat template: {e}")))
    }
}

/// `{"role": …, "content": content}`.
fn message_value(m: &Message, content: Value) -> Value {
    let mut map = BTreeMap::new();
    map.insert("role".to_string(), Value::from(m.role.as_str()));
    map.insert("content".to_string(), content);
    Value::from(map)
}

/// The chat template a Hugging Face processor saved in `dir` (`chat_template.json`,
/// `chat_template.jinja`, or `processor_config.json`'s `chat_template`), if any.
pub fn processor_chat_template(dir: &std::path::Path) -> Result<Option<ChatTemplate>> {
    let read_json = |name: &str| -> Result<Option<String>> {
        let path = dir.join(name);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::model_file(&path, e.to_string()))?;
        Ok(json["chat_template"].as_str().map(str::to_string))
    };
    let jinja = dir.join("chat_template.jinja");
    let source = match read_json("chat_template.json")? {
        Some(source) => Some(source),
        None if jinja.is_file() => {
            Some(std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e))?)
        }
        None => read_json("processor_config.json")?,
    };
    source.map(|s| ChatTemplate::new(&s)).transpose()
}

/// The Python `str` / `dict` methods chat templates call (`.strip()`, `.items()`, …).
fn python_methods(
    _state: &mut minijinja::State<'_, '_>,
    value: &Value,
    method: &str,
    args: &[Value],
) -> std::result::Result<Value, JinjaError> {
    let arg = |i: usize| args.get(i).and_then(|v| v.as_str()).map(str::to_string);
    if let Some(s) = value.as_str() {
        let chars = arg(0);
        let set = |c: char| {
            chars
                .as_deref()
                .map_or(c.is_whitespace(), |cs| cs.contains(c))
        };
        return Ok(match method {
            "strip" => Value::from(s.trim_matches(set)),
            "lstrip" => Value::from(s.trim_start_matches(set)),
            "rstrip" => Value::from(s.trim_end_matches(set)),
            "upper" => Value::from(s.to_uppercase()),
            "lower" => Value::from(s.to_lowercase()),
            "startswith" => Value::from(arg(0).is_some_and(|p| s.starts_with(&p))),
            "endswith" => Value::from(arg(0).is_some_and(|p| s.ends_with(&p))),
            "replace" => match (arg(0), arg(1)) {
                (Some(a), Some(b)) => Value::from(s.replace(&a, &b)),
                _ => return Err(JinjaError::from(ErrorKind::MissingArgument)),
            },
            "split" => {
                let parts: Vec<Value> = match arg(0) {
                    Some(sep) => s.split(sep.as_str()).map(Value::from).collect(),
                    None => s.split_whitespace().map(Value::from).collect(),
                };
                Value::from(parts)
            }
            _ => return Err(JinjaError::from(ErrorKind::UnknownMethod)),
        });
    }
    if value.kind() == ValueKind::Map {
        return Ok(match method {
            "items" => {
                let items: Vec<Value> = value
                    .try_iter()?
                    .map(|k| {
                        let v = value.get_item(&k).unwrap_or_default();
                        Value::from(vec![k, v])
                    })
                    .collect();
                Value::from(items)
            }
            "keys" => Value::from(value.try_iter()?.collect::<Vec<_>>()),
            "values" => Value::from(
                value
                    .try_iter()?
                    .map(|k| value.get_item(&k).unwrap_or_default())
                    .collect::<Vec<_>>(),
            ),
            "get" => {
                let key = args.first().cloned().unwrap_or_default();
                match value.get_item(&key) {
                    Ok(v) if !v.is_undefined() => v,
                    _ => args.get(1).cloned().unwrap_or(Value::from(())),
                }
            }
            _ => return Err(JinjaError::from(ErrorKind::UnknownMethod)),
        });
    }
    Err(JinjaError::from(ErrorKind::UnknownMethod))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's template (from its GGUF).
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_smollm2() {
        let t = ChatTemplate::new(SMOLLM2).unwrap();
        let out = t.render(&[Message::user("Hi")], true, "", "").unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = t
            .render(
                &[Message::system("Be brief."), Message::user("Hi")],
                false,
                "",
                "",
            )
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn python_methods_and_raise_exception() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{{ m['content'].strip() }}|{{ m.content.startswith('a') }}{% endfor %}",
        )
        .unwrap();
        assert_eq!(
            t.render(&[Message::user("  ab ")], false, "", "").unwrap(),
            "ab|False"
        );
        let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}").unwrap();
        let err = t.render(&[], false, "", "").unwrap_err().to_string();
        assert!(err.contains("roles must alternate"), "{err}");
        assert!(ChatTemplate::new("{% for %}").is_err());
    }
}
