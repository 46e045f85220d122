//! English text normalisation before G2P: numbers, currency, percentages, ordinals, times,
//! years, common abbreviations and symbols become words; emoji and other pictographs are
//! dropped. espeak-ng would read some of these itself, but inconsistently ("$5" as
//! "dollar five"), and Kokoro's own pipeline normalises first too.

use std::sync::LazyLock;

use regex::{Captures, Regex};

/// The text with numbers, symbols and abbreviations spelled out as words.
pub fn normalize(text: &str) -> String {
    let text = strip_pictographs(text);
    let text = replace(&ABBREVIATIONS, &text, |c| {
        let word = &c[1];
        let expanded = abbreviation(word).unwrap_or(word);
        format!("{expanded}{}", &c[2])
    });
    let text = replace(&CURRENCY, &text, |c| {
        currency(&c[1], &c[2], c.get(3).map(|m| m.as_str()))
    });
    let text = replace(&TIME, &text, |c| {
        time(&c[1], &c[2], c.get(3).map(|m| m.as_str()))
    });
    let text = replace(&PERCENT, &text, |c| format!("{} percent", number(&c[1])));
    let text = replace(&ORDINAL, &text, |c| ordinal(&digits(&c[1])));
    let text = replace(&YEAR, &text, |c| year(&c[1], !c[2].is_empty()));
    let text = replace(&NUMBER, &text, |c| match c.get(3) {
        Some(n) => {
            let sign = if c.get(2).is_some() { "minus " } else { "" };
            format!("{}{sign}{}", &c[1], number(n.as_str()))
        }
        None => number(&c[4]),
    });
    let text = replace(&SYMBOLS, &text, |c| {
        let word = match &c[0] {
            "&" => "and",
            "@" => "at",
            "+" => "plus",
            "=" => "equals",
            "%" => "percent",
            "#" => "number",
            _ => " ",
        };
        format!(" {word} ")
    });
    collapse_spaces(&text)
}

fn replace(re: &Regex, text: &str, f: impl Fn(&Captures) -> String) -> String {
    re.replace_all(text, |c: &Captures| f(c)).into_owned()
}

/// Keeps letters, digits, whitespace and the punctuation and symbols handled here; drops
/// emoji, pictographs and other symbols espeak-ng would read by their Unicode names.
fn strip_pictographs(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            c.is_alphanumeric()
                || c.is_whitespace()
                || c.is_ascii_punctuation()
                || "“”‘’—–…«»¡¿£€¥°".contains(c)
        })
        .collect()
}

fn collapse_spaces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split('\n') {
        if !out.is_empty() {
            out.push('\n');
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        out.push_str(&words.join(" "));
    }
    // No space before punctuation that a symbol expansion may have left.
    static BEFORE_PUNCT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r" ([,.;:!?])").unwrap());
    BEFORE_PUNCT.replace_all(out.trim(), "$1").into_owned()
}

static ABBREVIATIONS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b(Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|vs|etc|e\.g|i\.e|approx|Dept|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|Mon|Tue|Wed|Thu|Fri|Sat|Sun|No)\.(\s|$)",
    )
    .unwrap()
});

fn abbreviation(word: &str) -> Option<&'static str> {
    Some(match word.to_ascii_lowercase().as_str() {
        "mr" => "Mister",
        "mrs" => "Missus",
        "ms" => "Miz",
        "dr" => "Doctor",
        "prof" => "Professor",
        "st" => "Saint",
        "jr" => "Junior",
        "sr" => "Senior",
        "vs" => "versus",
        "etc" => "et cetera.",
        "e.g" => "for example",
        "i.e" => "that is",
        "approx" => "approximately",
        "dept" => "department",
        "no" => "number",
        "jan" => "January",
        "feb" => "February",
        "mar" => "March",
        "apr" => "April",
        "jun" => "June",
        "jul" => "July",
        "aug" => "August",
        "sep" | "sept" => "September",
        "oct" => "October",
        "nov" => "November",
        "dec" => "December",
        "mon" => "Monday",
        "tue" => "Tuesday",
        "wed" => "Wednesday",
        "thu" => "Thursday",
        "fri" => "Friday",
        "sat" => "Saturday",
        "sun" => "Sunday",
        _ => return None,
    })
}

/// `$`, `£`, `€`, `¥` before an amount, optionally followed by a scale word.
static CURRENCY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"([$£€¥])\s?({NUM})(?:\s+(thousand|million|billion|trillion)\b)?"
    ))
    .unwrap()
});

fn currency(symbol: &str, amount: &str, scale: Option<&str>) -> String {
    let (unit, units, cent, cents) = match symbol {
        "$" => ("dollar", "dollars", "cent", "cents"),
        "£" => ("pound", "pounds", "penny", "pence"),
        "€" => ("euro", "euros", "cent", "cents"),
        _ => ("yen", "yen", "sen", "sen"),
    };
    let amount = digits(amount);
    if let Some(scale) = scale {
        return format!("{} {scale} {units}", number(&amount));
    }
    let (whole, fraction) = amount.split_once('.').unwrap_or((&amount, ""));
    let whole_words = cardinal(whole);
    let unit_word = if whole.trim_start_matches('0') == "1" {
        unit
    } else {
        units
    };
    let cents_value: u64 = match fraction.len() {
        0 => 0,
        1 => fraction.parse::<u64>().unwrap_or(0) * 10,
        _ => fraction[..2].parse().unwrap_or(0),
    };
    match (whole.trim_start_matches('0').is_empty(), cents_value) {
        (_, 0) => format!("{whole_words} {unit_word}"),
        (true, c) => format!(
            "{} {}",
            cardinal(&c.to_string()),
            if c == 1 { cent } else { cents }
        ),
        (false, c) => format!(
            "{whole_words} {unit_word} and {} {}",
            cardinal(&c.to_string()),
            if c == 1 { cent } else { cents }
        ),
    }
}

/// `3:30`, `10:05 pm`.
static TIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b([01]?\d|2[0-3]):([0-5]\d)\b(?:\s*([AaPp])\.?[Mm]\b\.?)?").unwrap()
});

fn time(hours: &str, minutes: &str, meridiem: Option<&str>) -> String {
    let h = cardinal(hours);
    let m = match minutes {
        "00" if meridiem.is_some() => String::new(),
        "00" => " o'clock".to_string(),
        m if m.starts_with('0') => format!(" oh {}", cardinal(&m[1..])),
        m => format!(" {}", cardinal(m)),
    };
    let suffix = match meridiem.map(|s| s.to_ascii_lowercase()) {
        Some(s) if s == "a" => " a m",
        Some(_) => " p m",
        None => "",
    };
    format!("{h}{m}{suffix}")
}

/// A number: digits with optional thousands commas and decimals.
const NUM: &str = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?";

static PERCENT: LazyLock<Regex> = LazyLock::new(|| Regex::new(&format!(r"\b({NUM})\s?%")).unwrap());

static ORDINAL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{1,3}(?:,\d{3})+|\d+)(?:st|nd|rd|th)\b").unwrap());

/// A bare four-digit number from 1100 to 2099, read as a year (`1990s` too).
static YEAR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b((?:1[1-9]|20)\d\d)(s?)\b").unwrap());

/// A number, with a minus sign when it starts a word (`-5`, not `5-10`).
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"(^|\s|\()(-)?\b({NUM})\b|\b({NUM})\b")).unwrap());

static SYMBOLS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[&@+=%#*_~^|<>/\\]").unwrap());

/// Digits without thousands separators.
fn digits(text: &str) -> String {
    text.replace(',', "")
}

/// An integer or decimal: `3.14` → "three point one four".
fn number(text: &str) -> String {
    let text = digits(text);
    match text.split_once('.') {
        Some((whole, fraction)) => {
            let whole = if whole.is_empty() { "0" } else { whole };
            let fraction: Vec<&str> = fraction.chars().map(digit_word).collect();
            format!("{} point {}", cardinal(whole), fraction.join(" "))
        }
        None => cardinal(&text),
    }
}

fn year(text: &str, plural: bool) -> String {
    let value: u32 = text.parse().unwrap_or(0);
    let (hi, lo) = (value / 100, value % 100);
    let spoken = if (2000..2010).contains(&value) || value.is_multiple_of(1000) {
        cardinal(&value.to_string())
    } else if lo == 0 {
        format!("{} hundred", cardinal(&hi.to_string()))
    } else if lo < 10 {
        format!(
            "{} oh {}",
            cardinal(&hi.to_string()),
            cardinal(&lo.to_string())
        )
    } else {
        format!(
            "{} {}",
            cardinal(&hi.to_string()),
            cardinal(&lo.to_string())
        )
    };
    if plural { pluralize(&spoken) } else { spoken }
}

/// "nineteen eighty" → "nineteen eighties".
fn pluralize(words: &str) -> String {
    match words.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{words}s"),
    }
}

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];
const SCALES: [&str; 6] = [
    "",
    "thousand",
    "million",
    "billion",
    "trillion",
    "quadrillion",
];

fn digit_word(c: char) -> &'static str {
    ONES[c.to_digit(10).unwrap_or(0) as usize]
}

/// A non-negative integer in words; numbers too long for the scale words are read digit
/// by digit.
fn cardinal(text: &str) -> String {
    let trimmed = text.trim_start_matches('0');
    if trimmed.is_empty() {
        return "zero".into();
    }
    if trimmed.len() > 18 {
        return text.chars().map(digit_word).collect::<Vec<_>>().join(" ");
    }
    let mut value: u64 = trimmed.parse().unwrap_or(0);
    let mut groups = Vec::new();
    let mut scale = 0;
    while value > 0 {
        let group = value % 1000;
        if group > 0 {
            let words = below_thousand(group);
            groups.push(match SCALES[scale] {
                "" => words,
                s => format!("{words} {s}"),
            });
        }
        value /= 1000;
        scale += 1;
    }
    groups.reverse();
    groups.join(" ")
}

fn below_thousand(n: u64) -> String {
    let (hundreds, rest) = (n / 100, n % 100);
    let rest_words = match rest {
        0 => String::new(),
        r if r < 20 => ONES[r as usize].to_string(),
        r if r % 10 == 0 => TENS[(r / 10) as usize].to_string(),
        r => format!("{}-{}", TENS[(r / 10) as usize], ONES[(r % 10) as usize]),
    };
    match (hundreds, rest_words.is_empty()) {
        (0, _) => rest_words,
        (h, true) => format!("{} hundred", ONES[h as usize]),
        (h, false) => format!("{} hundred {rest_words}", ONES[h as usize]),
    }
}

fn ordinal(text: &str) -> String {
    let words = cardinal(text);
    let (head, last) = match words.rfind([' ', '-']) {
        Some(i) => words.split_at(i + 1),
        None => ("", words.as_str()),
    };
    let last = match last {
        "one" => "first".to_string(),
        "two" => "second".to_string(),
        "three" => "third".to_string(),
        "five" => "fifth".to_string(),
        "eight" => "eighth".to_string(),
        "nine" => "ninth".to_string(),
        "twelve" => "twelfth".to_string(),
        w if w.ends_with('y') => format!("{}ieth", &w[..w.len() - 1]),
        w => format!("{w}th"),
    };
    format!("{head}{last}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_become_words() {
        assert_eq!(normalize("I have 3 cats."), "I have three cats.");
        assert_eq!(
            normalize("It costs 1,234,567 units."),
            "It costs one million two hundred thirty-four thousand five hundred sixty-seven units."
        );
        assert_eq!(normalize("Pi is 3.14"), "Pi is three point one four");
        assert_eq!(normalize("It was -5 outside"), "It was minus five outside");
        assert_eq!(normalize("Room 101"), "Room one hundred one");
    }

    #[test]
    fn currency_percent_ordinals_times_years() {
        assert_eq!(normalize("$5.50"), "five dollars and fifty cents");
        assert_eq!(normalize("It costs $1."), "It costs one dollar.");
        assert_eq!(normalize("£0.99"), "ninety-nine pence");
        assert_eq!(normalize("€3 million"), "three million euros");
        assert_eq!(normalize("a 50% chance"), "a fifty percent chance");
        assert_eq!(normalize("the 21st and 2nd"), "the twenty-first and second");
        assert_eq!(normalize("the 40th"), "the fortieth");
        assert_eq!(normalize("at 3:30 pm"), "at three thirty p m");
        assert_eq!(normalize("at 7:05"), "at seven oh five");
        assert_eq!(
            normalize("in 1984 and 2005"),
            "in nineteen eighty-four and two thousand five"
        );
        assert_eq!(normalize("the 1990s"), "the nineteen nineties");
        assert_eq!(normalize("in 2024"), "in twenty twenty-four");
    }

    #[test]
    fn abbreviations_symbols_and_emoji() {
        assert_eq!(
            normalize("Dr. Smith met Mr. Jones."),
            "Doctor Smith met Mister Jones."
        );
        assert_eq!(normalize("cats & dogs"), "cats and dogs");
        assert_eq!(normalize("Hello 👋 world 🌍!"), "Hello world!");
        assert_eq!(normalize("🎉🎉"), "");
        assert_eq!(normalize("  spaced\t out  "), "spaced out");
    }
}
