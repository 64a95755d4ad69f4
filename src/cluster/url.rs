//! `--redis redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, checked before anything
//! connects. No thread of its own.

use std::fmt;

use crate::wire::http;

/// Where Redis is, and how to log in.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RedisUrl {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// For `AUTH USER PASSWORD` (Redis 6 ACLs); `None` for the default user.
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    /// For `SELECT`.
    pub(crate) db: u32,
}

/// Redis's own default port.
const DEFAULT_PORT: u16 = 6379;

impl RedisUrl {
    /// Parses a `redis://` URL; the error says what is wrong with it.
    pub(crate) fn parse(url: &str) -> Result<RedisUrl, String> {
        let usage = "expected redis://[:PASSWORD@]HOST[:PORT][/DB], e.g. redis://127.0.0.1:6379";
        let Some(rest) = url.strip_prefix("redis://") else {
            return Err(if url.starts_with("rediss://") {
                "rediss:// (TLS) is not supported: reach Redis over a private network or a \
                 TLS tunnel (e.g. stunnel), and use redis://"
                    .to_string()
            } else {
                format!("{url:?} is not a redis:// URL: {usage}")
            });
        };
        let (authority, db) = match rest.split_once('/') {
            Some((authority, "")) => (authority, 0),
            Some((authority, db)) => {
                let db = db
                    .parse()
                    .map_err(|_| format!("{db:?} is not a database number: {usage}"))?;
                (authority, db)
            }
            None => (rest, 0),
        };
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((credentials, host_port)) => (Some(credentials), host_port),
            None => (None, authority),
        };
        let (username, password) = match credentials {
            None => (None, None),
            Some(credentials) => {
                let (user, password) = credentials.split_once(':').unwrap_or(("", credentials));
                let user = percent_decode(user)?;
                let password = percent_decode(password)?;
                if password.is_empty() {
                    return Err(format!("the password in {url:?} is empty: {usage}"));
                }
                ((!user.is_empty()).then_some(user), Some(password))
            }
        };
        let (host, port) = split_host_port(host_port)
            .ok_or_else(|| format!("{host_port:?} is not HOST or HOST:PORT: {usage}"))?;
        Ok(RedisUrl {
            host,
            port,
            username,
            password,
            db,
        })
    }
}

/// `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT`.
fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || "-._:".contains(c);
    if host.is_empty() || !host.chars().all(valid) {
        return None;
    }
    let port = match port {
        Some(port) => port.parse().ok().filter(|&p| p != 0)?,
        None => DEFAULT_PORT,
    };
    Some((host.to_string(), port))
}

/// Decodes `%XX` escapes (a password may hold `@`, `:` or `/` that way).
fn percent_decode(text: &str) -> Result<String, String> {
    http::percent_decode(text, false).ok_or_else(|| {
        "the user or password has a % not followed by two hex digits, or is not UTF-8 \
         once decoded"
            .to_string()
    })
}

/// Shows where Redis is, never the password (it goes to the log).
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "redis://")?;
        if self.password.is_some() {
            write!(f, "{}:***@", self.username.as_deref().unwrap_or(""))?;
        }
        write!(f, "{host}:{}/{}", self.port, self.db)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_people_write() {
        let url = RedisUrl::parse("redis://127.0.0.1").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.db),
            ("127.0.0.1", 6379, 0)
        );
        let url = RedisUrl::parse("redis://:p%40ss@redis.local:6380/2").unwrap();
        assert_eq!(url.password.as_deref(), Some("p@ss"));
        // In a URL's user and password, `+` is itself, not a space.
        let plus = RedisUrl::parse("redis://:a+b@h").unwrap();
        assert_eq!(plus.password.as_deref(), Some("a+b"));
        assert_eq!(url.username, None);
        assert_eq!(
            (url.host.as_str(), url.port, url.db),
            ("redis.local", 6380, 2)
        );
        let url = RedisUrl::parse("redis://app:secret@[::1]:7000/").unwrap();
        assert_eq!(url.username.as_deref(), Some("app"));
        assert_eq!((url.host.as_str(), url.port), ("::1", 7000));
        assert_eq!(url.to_string(), "redis://app:***@[::1]:7000/0");
    }

    #[test]
    fn says_what_is_wrong_with_a_bad_url() {
        for (bad, says) in [
            ("127.0.0.1:6379", "is not a redis:// URL"),
            ("rediss://h", "TLS"),
            ("redis://", "is not HOST"),
            ("redis://h:0", "is not HOST"),
            ("redis://h:99999", "is not HOST"),
            ("redis://h:port", "is not HOST"),
            ("redis://h/x", "is not a database number"),
            ("redis://:@h", "password"),
            ("redis://:%zz@h", "hex digits"),
            ("redis://h h", "is not HOST"),
        ] {
            let error = RedisUrl::parse(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
