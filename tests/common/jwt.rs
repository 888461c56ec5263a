//! Login tokens for the tests of signed logins (`--auth-secret`), made as an app would make
//! them: a JWT with `sub` (the user) and `exp`, signed with the server's secret.

use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
use serde_json::json;

/// A token (signed with `alg`) for `sub` that expires `exp_in` seconds from now (negative:
/// already expired).
pub fn sign(alg: Algorithm, secret: &str, sub: &str, exp_in: i64) -> String {
    let exp = get_current_timestamp() as i64 + exp_in;
    let key = EncodingKey::from_secret(secret.as_bytes()).unwrap();
    encode(&Header::new(alg), &json!({"sub": sub, "exp": exp}), &key).unwrap()
}

/// An HS256 token for `sub`, valid for an hour.
pub fn token(secret: &str, sub: &str) -> String {
    sign(Algorithm::HS256, secret, sub, 3600)
}
