//! The JWS signature algorithms this gateway verifies (RFC 7518 §3,
//! RFC 8037), named by key sets ([`super::jwks`]) and by the RSA backends
//! ([`super::rsa_key`]).

/// The JWS algorithms this gateway verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlgorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    EdDsa,
}

impl JwsAlgorithm {
    pub(crate) const RSA: [JwsAlgorithm; 6] = [
        JwsAlgorithm::Rs256,
        JwsAlgorithm::Rs384,
        JwsAlgorithm::Rs512,
        JwsAlgorithm::Ps256,
        JwsAlgorithm::Ps384,
        JwsAlgorithm::Ps512,
    ];

    /// The algorithm of a JWS `alg` value, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => JwsAlgorithm::Rs256,
            "RS384" => JwsAlgorithm::Rs384,
            "RS512" => JwsAlgorithm::Rs512,
            "PS256" => JwsAlgorithm::Ps256,
            "PS384" => JwsAlgorithm::Ps384,
            "PS512" => JwsAlgorithm::Ps512,
            "ES256" => JwsAlgorithm::Es256,
            "EdDSA" => JwsAlgorithm::EdDsa,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            JwsAlgorithm::Rs256 => "RS256",
            JwsAlgorithm::Rs384 => "RS384",
            JwsAlgorithm::Rs512 => "RS512",
            JwsAlgorithm::Ps256 => "PS256",
            JwsAlgorithm::Ps384 => "PS384",
            JwsAlgorithm::Ps512 => "PS512",
            JwsAlgorithm::Es256 => "ES256",
            JwsAlgorithm::EdDsa => "EdDSA",
        }
    }

    /// This algorithm in a bit set (a key's allowed algorithms).
    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}
