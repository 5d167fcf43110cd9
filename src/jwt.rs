//! The one JWT claim hashup reads, without verifying the token: its expiry. The
//! client refuses to start a run with an expired token (as the reference CLI does)
//! and `serve` refuses expired tokens from its tokens file. A leaf shared by both sides: it
//! imports nothing of hashup's.

use base64::Engine as _;

/// The `exp` claim of a JWT-shaped token, if it is one and has a numeric `exp`.
pub fn exp(token: &str) -> Option<f64> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_f64()
}
