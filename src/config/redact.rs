//! URLs fit for messages and logs: passwords masked. The config's errors
//! and the store's connection errors both show URLs through it, so no
//! password reaches a terminal or a log line.

/// A URL fit for a message or a log: the password of its user info and the
/// value of any secret-bearing query parameter (`password=`,
/// `sslpassword=`…) replaced by `***` (`postgres://u:***@h/db`).
pub fn redact(url: &str) -> String {
    const SECRET_PARAMS: [&str; 5] = ["password", "sslpassword", "pass", "pwd", "token"];
    // The user info ends at the last `@`, whatever the password holds (`/`,
    // `?`, `@`): masking too much beats showing part of a password.
    let (mut out, rest) = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => (format!("{}{user}:***@", &url[..scheme + 3]), &url[at + 1..]),
            None => (url[..=at].to_owned(), &url[at + 1..]),
        },
        _ => (String::new(), url),
    };
    let (base, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    out.push_str(base);
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((k, _)) if SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(k)) => format!("{k}=***"),
                _ => param.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgresq://u:p@ss:w@h:5432/db"), "postgresq://u:***@h:5432/db");
        assert_eq!(
            redact("postgres://u@h/db?sslmode=require&Password=x"),
            "postgres://u@h/db?sslmode=require&Password=***"
        );
        assert_eq!(redact("sqlite://k.db"), "sqlite://k.db");
        assert_eq!(redact("postgres://h/db?application_name=a@b"), "postgres://h/db?application_name=a@b");
        assert_eq!(redact("postgres://u:a?b/c@h/db"), "postgres://u:***@h/db");
    }
}
