//! Who may do what, for the web adapters: the HTTP API's bearer tokens (`--api-token`),
//! browser origins (`--allowed-origins`), and signed WebSocket logins (`--auth-secret`).
//!
//! Pure checks on values the adapters pass in; the one clock read is the wall clock a
//! JWT's `exp` is measured against (`jsonwebtoken`'s own), turned into an [`Instant`] at
//! once so the loop's deadlines stay monotonic.

use crate::config::Config;
use jsonwebtoken::{decode, get_current_timestamp, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sha1::{Digest as _, Sha1};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Which API token an `Authorization` header presents: `Some(i)` for `--api-token` number
/// `i` (or `Some(0)` when the API is open: every caller shares one `msgID` space), `None`
/// when tokens are required and none matches.
///
/// Each token is compared in constant time, and all of them every time: both sides are
/// hashed first, so neither where the bytes differ nor whether the lengths do shows in
/// the time taken (SHA-1's collisions do not matter here: guessing needs a preimage).
pub fn api_token(config: &Config, authorization: Option<&str>) -> Option<usize> {
    if config.access.api_tokens.is_empty() {
        return Some(0);
    }
    let presented = digest(bearer(authorization?)?);
    let mut found = None;
    for (i, token) in config.access.api_tokens.iter().enumerate() {
        let equal: bool = digest(token).ct_eq(&presented).into();
        if equal && found.is_none() {
            found = Some(i);
        }
    }
    found
}

/// The credentials of `Bearer CREDENTIALS` (the scheme in any case, RFC 7235 §2.1).
fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, credentials) = authorization.trim().split_once(' ')?;
    let credentials = credentials.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credentials.is_empty()).then_some(credentials)
}

/// `host[:port]` (an IPv6 host in brackets) split into host and port.
fn split_port(authority: &str) -> (&str, Option<u16>) {
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
            (host, port.parse().ok())
        }
        _ => (authority, None),
    }
}

fn digest(text: &str) -> [u8; 20] {
    Sha1::digest(text.as_bytes()).into()
}

/// Whether a request with this `Origin` (and this `Host`) may go on. No `Origin`: not a
/// browser page, so yes. Otherwise the origin must be the server's own or one of
/// `--allowed-origins`, scheme and host compared ignoring case. The server's own origin
/// is `http://` or `https://` followed by the `Host` the browser sent (as the page served
/// from here has), or by that host on another of the server's web `ports` (the page
/// served by `--http-port` connects to `--ws-port`).
pub fn origin_allowed(
    config: &Config,
    ports: &[u16],
    host: Option<&str>,
    origin: Option<&str>,
) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let own = host.is_some_and(|host| {
        let lower = origin.to_ascii_lowercase();
        let Some(rest) = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"))
        else {
            return false;
        };
        if rest.eq_ignore_ascii_case(host) {
            return true;
        }
        let (origin_host, origin_port) = split_port(rest);
        let (host, _) = split_port(host);
        origin_host.eq_ignore_ascii_case(host) && origin_port.is_some_and(|p| ports.contains(&p))
    });
    own || config
        .access
        .allowed_origins
        .iter()
        .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// Verifies a signed login for user `id`: an HS256 JWT under `secret` (no other
/// algorithm), whose `sub` is `id` and whose `exp` has not passed. Returns when the token
/// expires, as seen from `now`; `None` if it is not valid.
pub fn verify_login(secret: &str, token: &str, id: &str, now: Instant) -> Option<Instant> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation.sub = Some(id.to_owned());
    validation.leeway = 0;
    validation.validate_aud = false;
    let key = DecodingKey::from_secret(secret.as_bytes()).ok()?;
    let claims = decode::<Map<String, Value>>(token, &key, &validation)
        .ok()?
        .claims;
    // `exp` was validated as a number in the future; it may be written as a float.
    let exp = claims.get("exp").and_then(Value::as_f64)?;
    // A token that "never" expires must not overflow the clock: a century is never here.
    let left = (exp - get_current_timestamp() as f64).clamp(0.0, CENTURY.as_secs_f64());
    now.checked_add(Duration::try_from_secs_f64(left).ok()?)
}

/// The longest a signed login is taken to last, however far its `exp`.
const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Access;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn token(alg: Algorithm, secret: &str, claims: Value) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn api_tokens_rotate_and_must_match() {
        let open = Config::default();
        assert_eq!(api_token(&open, None), Some(0));
        let config = Config {
            access: Access {
                api_tokens: vec!["old".into(), "new".into()],
                ..Access::default()
            },
            ..Config::default()
        };
        assert_eq!(api_token(&config, Some("Bearer old")), Some(0));
        assert_eq!(api_token(&config, Some("bearer  new ")), Some(1));
        assert_eq!(api_token(&config, Some("Bearer ol")), None);
        assert_eq!(api_token(&config, Some("Basic old")), None);
        assert_eq!(api_token(&config, Some("Bearer")), None);
        assert_eq!(api_token(&config, None), None);
    }

    #[test]
    fn origins() {
        let config = Config {
            access: Access {
                allowed_origins: vec!["https://Chat.Example".into()],
                ..Access::default()
            },
            ..Config::default()
        };
        let ports = [8080, 8081];
        let host = Some("127.0.0.1:8080");
        let allowed = |host, origin| origin_allowed(&config, &ports, host, origin);
        assert!(allowed(host, None));
        assert!(allowed(host, Some("http://127.0.0.1:8080")));
        assert!(allowed(host, Some("HTTPS://127.0.0.1:8080")));
        assert!(allowed(host, Some("https://chat.example")));
        assert!(allowed(host, Some("http://127.0.0.1:8081"))); // the other listener
        assert!(!allowed(host, Some("http://127.0.0.1:8082")));
        assert!(!allowed(host, Some("http://localhost:8081")));
        assert!(!allowed(host, Some("http://evil.example")));
        assert!(!allowed(host, Some("null")));
        assert!(!allowed(None, Some("http://127.0.0.1:8080")));
        assert!(allowed(Some("[::1]:8080"), Some("http://[::1]:8081")));
        assert!(allowed(Some("chat.example"), Some("https://chat.example")));
    }

    #[test]
    fn signed_logins() {
        let now = Instant::now();
        let exp = get_current_timestamp() + 60;
        let good = token(Algorithm::HS256, "s", json!({"sub": "alice", "exp": exp}));
        let until = verify_login("s", &good, "alice", now).unwrap();
        assert!(until > now + Duration::from_secs(58));
        // A token that "never" expires does not overflow the clock.
        let forever = token(Algorithm::HS256, "s", json!({"sub": "alice", "exp": 1e19}));
        let until = verify_login("s", &forever, "alice", now).unwrap();
        assert!(until >= now + Duration::from_secs(99 * 365 * 24 * 3600));
        assert!(verify_login("t", &good, "alice", now).is_none());
        assert!(verify_login("s", &good, "bob", now).is_none());
        let past = get_current_timestamp() - 1;
        let expired = token(Algorithm::HS256, "s", json!({"sub": "alice", "exp": past}));
        assert!(verify_login("s", &expired, "alice", now).is_none());
        let no_exp = token(Algorithm::HS256, "s", json!({"sub": "alice"}));
        assert!(verify_login("s", &no_exp, "alice", now).is_none());
        let hs512 = token(Algorithm::HS512, "s", json!({"sub": "alice", "exp": exp}));
        assert!(verify_login("s", &hs512, "alice", now).is_none());
        // alg "none": a header and claims with an empty signature.
        let b64 = |v: Value| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let none = format!(
            "{}.{}.",
            b64(json!({"alg": "none", "typ": "JWT"})),
            b64(json!({"sub": "alice", "exp": exp}))
        );
        assert!(verify_login("s", &none, "alice", now).is_none());
        assert!(verify_login("s", "garbage", "alice", now).is_none());
    }
}
