//! IOC normalisation: refang (`hxxp`, `[.]`, `(.)`, `[:]`, `[at]`), then classify as IP, hash, domain,
//! URL or file name, each of which is looked up in its own index field.

use store::index::IocField;

/// A normalised IOC.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Ioc {
    /// What was sent.
    pub input: String,
    /// After refanging.
    pub value: String,
    /// `ip`, `md5`, `sha1`, `sha256`, `domain`, `url` or `filename`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip)]
    pub(crate) field: IocField,
}

/// Refangs a defanged indicator.
pub fn refang(s: &str) -> String {
    let mut v = s.trim().to_owned();
    for (from, to) in [
        ("[.]", "."),
        ("(.)", "."),
        ("{.}", "."),
        ("[dot]", "."),
        ("[:]", ":"),
        ("[://]", "://"),
        ("[at]", "@"),
    ] {
        v = v.replace(from, to);
    }
    let lower = v.to_lowercase();
    for (from, to) in [("hxxps", "https"), ("hxxp", "http"), ("fxp", "ftp")] {
        if lower.starts_with(from) {
            v = format!("{to}{}", &v[from.len()..]);
            break;
        }
    }
    v
}

/// Normalises and classifies one indicator; `Err` says why it is not one.
pub fn classify(input: &str) -> Result<Ioc, String> {
    let value = refang(input);
    if value.is_empty() {
        return Err("empty indicator".to_owned());
    }
    if value.len() > 2048 {
        return Err("indicator longer than 2048 bytes".to_owned());
    }
    let hex = value.chars().all(|c| c.is_ascii_hexdigit());
    let (kind, field) = if value.parse::<std::net::IpAddr>().is_ok() {
        ("ip", IocField::Ip)
    } else if hex && value.len() == 32 {
        ("md5", IocField::Hash)
    } else if hex && value.len() == 40 {
        ("sha1", IocField::Hash)
    } else if hex && value.len() == 64 {
        ("sha256", IocField::Hash)
    } else if value.contains("://") {
        ("url", IocField::Text)
    } else if looks_like_domain(&value) {
        ("domain", IocField::Domain)
    } else {
        ("filename", IocField::Text)
    };
    let value =
        if field == IocField::Hash || field == IocField::Domain { value.to_lowercase() } else { value };
    Ok(Ioc { input: input.to_owned(), value, kind, field })
}

fn looks_like_domain(v: &str) -> bool {
    const FILE_EXTS: &[&str] = &[
        "exe", "dll", "docx", "doc", "xlsx", "pdf", "zip", "ps1", "bat", "vbs", "js", "txt", "sys", "scr",
        "jar",
    ];
    let labels: Vec<&str> = v.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        && labels.last().is_some_and(|t| {
            t.chars().all(|c| c.is_ascii_alphabetic()) && !FILE_EXTS.contains(&t.to_lowercase().as_str())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refangs_and_classifies() {
        assert_eq!(
            classify("hxxp://cdn-update[.]example/static/update.exe").unwrap().value,
            "http://cdn-update.example/static/update.exe"
        );
        assert_eq!(classify("hxxp://x[.]y").unwrap().kind, "url");
        assert_eq!(classify("203.0.113[.]66").unwrap().kind, "ip");
        assert_eq!(classify("CDN-Update[.]example").unwrap().value, "cdn-update.example");
        assert_eq!(classify("CDN-Update[.]example").unwrap().kind, "domain");
        assert_eq!(classify(&"A".repeat(64)).unwrap().kind, "sha256");
        assert_eq!(classify(&"a".repeat(64)).unwrap().value, "a".repeat(64));
        assert_eq!(classify(&"b".repeat(32)).unwrap().kind, "md5");
        assert_eq!(classify("PromotionReview.docx.exe").unwrap().kind, "filename");
        assert!(classify("   ").is_err());
    }
}
