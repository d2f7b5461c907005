//! Where the miner gets its work, from what the user typed: the node's HTTP API
//! (`--node`) or a Stratum V1 pool (`--pool`).
//!
//! A URL the miner cannot use is a permanent error, reported before anything connects:
//! retrying it would never help. A URL without a scheme takes the usual one
//! (`http://` for a node, as the wallet does; `stratum+tcp://` for a pool).

use reqwest::Url;

/// The node URL used when `--node` is not given (the wallet's default too).
pub const DEFAULT_NODE: &str = "http://127.0.0.1:8080";

/// Why a URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    #[error("empty URL")]
    Empty,
    #[error("`{url}` is not a URL: {reason}")]
    Malformed { url: String, reason: String },
    #[error("`{url}`: scheme `{scheme}` is not supported ({hint})")]
    Scheme {
        url: String,
        scheme: String,
        hint: &'static str,
    },
    #[error("`{0}` has no host")]
    NoHost(String),
    #[error("`{0}` has no port (Stratum pools have no standard one: add e.g. `:3333`)")]
    NoPort(String),
    #[error("`{0}`: a base URL takes no query or fragment")]
    Extra(String),
}

/// A node base URL (`http://host:port[/prefix]`, no trailing slash) from `--node`.
pub fn node_url(input: &str) -> Result<String, UrlError> {
    let url = parse_with_default(input, "http")?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(UrlError::Scheme {
                url: input.trim().to_string(),
                scheme: "https".into(),
                hint: "this build has no TLS; use http:// to a local node or a TLS proxy",
            })
        }
        other => {
            return Err(UrlError::Scheme {
                url: input.trim().to_string(),
                scheme: other.into(),
                hint: "a node is reached over http://",
            })
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost(input.trim().to_string()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(UrlError::Extra(input.trim().to_string()));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// A Stratum pool's host and port from `--pool` (`stratum+tcp://HOST:PORT` or
/// `HOST:PORT`).
pub fn pool_addr(input: &str) -> Result<(String, u16), UrlError> {
    let url = parse_with_default(input, "stratum+tcp")?;
    match url.scheme() {
        "stratum+tcp" | "stratum" | "tcp" => {}
        s @ ("stratum+ssl" | "stratum+tls" | "stratum2+tcp") => {
            return Err(UrlError::Scheme {
                url: input.trim().to_string(),
                scheme: s.into(),
                hint: if s.starts_with("stratum2") {
                    "this miner speaks Stratum V1: stratum+tcp://"
                } else {
                    "this build has no TLS; use the pool's stratum+tcp:// port"
                },
            })
        }
        other => {
            return Err(UrlError::Scheme {
                url: input.trim().to_string(),
                scheme: other.into(),
                hint: "a pool is reached over stratum+tcp://",
            })
        }
    }
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']'),
        _ => return Err(UrlError::NoHost(input.trim().to_string())),
    };
    let Some(port) = url.port() else {
        return Err(UrlError::NoPort(input.trim().to_string()));
    };
    if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
        return Err(UrlError::Extra(input.trim().to_string()));
    }
    Ok((host.to_string(), port))
}

/// Parses `input`, taking `default_scheme` when it has none (`127.0.0.1:8080` would
/// otherwise parse as scheme `127.0.0.1`, and `localhost:8080` as scheme `localhost`).
fn parse_with_default(input: &str, default_scheme: &str) -> Result<Url, UrlError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(UrlError::Empty);
    }
    let full = if s.contains("://") {
        s.to_string()
    } else {
        format!("{default_scheme}://{s}")
    };
    Url::parse(&full).map_err(|e| UrlError::Malformed {
        url: s.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_url_without_scheme_is_http() {
        assert_eq!(node_url("127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(node_url("localhost:8080").unwrap(), "http://localhost:8080");
        assert_eq!(node_url(" node.example ").unwrap(), "http://node.example");
        assert_eq!(
            node_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            node_url("http://proxy:80/bitplace/").unwrap(),
            "http://proxy/bitplace"
        );
        assert_eq!(node_url(DEFAULT_NODE).unwrap(), DEFAULT_NODE);
    }

    #[test]
    fn unusable_node_urls_are_refused() {
        assert_eq!(node_url("  "), Err(UrlError::Empty));
        assert!(matches!(
            node_url("https://node.example"),
            Err(UrlError::Scheme { scheme, .. }) if scheme == "https"
        ));
        assert!(matches!(
            node_url("ftp://node.example"),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(
            node_url("http://exa mple:80"),
            Err(UrlError::Malformed { .. })
        ));
        assert!(matches!(
            node_url("127.0.0.1:99999"),
            Err(UrlError::Malformed { .. })
        ));
        assert!(matches!(
            node_url("http://node:8080/?x=1"),
            Err(UrlError::Extra(_))
        ));
    }

    #[test]
    fn pool_urls_take_host_and_port() {
        assert_eq!(
            pool_addr("stratum+tcp://pool.example.com:3333").unwrap(),
            ("pool.example.com".to_string(), 3333)
        );
        assert_eq!(
            pool_addr("127.0.0.1:3333").unwrap(),
            ("127.0.0.1".to_string(), 3333)
        );
        assert_eq!(
            pool_addr("stratum+tcp://[::1]:3334/").unwrap(),
            ("::1".to_string(), 3334)
        );
        assert!(matches!(
            pool_addr("stratum+tcp://pool.example.com"),
            Err(UrlError::NoPort(_))
        ));
        assert!(matches!(
            pool_addr("stratum+ssl://pool.example.com:443"),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(
            pool_addr("http://pool.example.com:3333"),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(
            pool_addr("stratum+tcp://pool:3333/path"),
            Err(UrlError::Extra(_))
        ));
    }
}
