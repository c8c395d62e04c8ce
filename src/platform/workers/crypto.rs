//! RSA signatures checked by WebCrypto (`crypto.subtle`), the core's
//! `Check::VerifySignature`: several times faster than in wasm. Imported
//! keys are kept per isolate.

use std::cell::RefCell;

use wasm_bindgen::prelude::*;
use worker::js_sys::{self, Uint8Array};
use worker::wasm_bindgen_futures::JsFuture;

use crate::auth::{JwsAlgorithm, SignatureCheck};

/// Checks `check`'s RSA signature with WebCrypto; `None` when it cannot.
pub(super) async fn verify_rsa(check: &SignatureCheck) -> Option<bool> {
    let key = web_crypto_key(check).await?;
    let (name, salt_length) = web_crypto_algorithm(check.alg)?;
    let params = js_object(&[("name", name.into())]);
    if let Some(salt_length) = salt_length {
        let _ = js_sys::Reflect::set(&params, &"saltLength".into(), &salt_length.into());
    }
    let promise = subtle_verify(
        &params,
        &key,
        &Uint8Array::from(check.signature.as_slice()),
        &Uint8Array::from(check.signed_data.as_slice()),
    )
    .ok()?;
    JsFuture::from(promise).await.ok()?.as_bool()
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = importKey, catch)]
    fn subtle_import_key(
        format: &str,
        key_data: &JsValue,
        algorithm: &JsValue,
        extractable: bool,
        usages: &js_sys::Array,
    ) -> Result<js_sys::Promise, JsValue>;

    #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = verify, catch)]
    fn subtle_verify(
        algorithm: &JsValue,
        key: &JsValue,
        signature: &Uint8Array,
        data: &Uint8Array,
    ) -> Result<js_sys::Promise, JsValue>;
}

/// WebCrypto's name and PSS salt length for an RSA JWS algorithm (RFC 7518
/// §3.3, §3.5: the salt is as long as the digest).
fn web_crypto_algorithm(alg: JwsAlgorithm) -> Option<(&'static str, Option<u32>)> {
    Some(match alg {
        JwsAlgorithm::Rs256 | JwsAlgorithm::Rs384 | JwsAlgorithm::Rs512 => {
            ("RSASSA-PKCS1-v1_5", None)
        }
        JwsAlgorithm::Ps256 => ("RSA-PSS", Some(32)),
        JwsAlgorithm::Ps384 => ("RSA-PSS", Some(48)),
        JwsAlgorithm::Ps512 => ("RSA-PSS", Some(64)),
        JwsAlgorithm::Es256 | JwsAlgorithm::EdDsa => return None,
    })
}

fn web_crypto_hash(alg: JwsAlgorithm) -> &'static str {
    match alg {
        JwsAlgorithm::Rs384 | JwsAlgorithm::Ps384 => "SHA-384",
        JwsAlgorithm::Rs512 | JwsAlgorithm::Ps512 => "SHA-512",
        _ => "SHA-256",
    }
}

fn js_object(fields: &[(&str, JsValue)]) -> JsValue {
    let object: JsValue = js_sys::Object::new().into();
    for (name, value) in fields {
        let _ = js_sys::Reflect::set(&object, &(*name).into(), value);
    }
    object
}

/// Imported WebCrypto keys by key thumbprint and algorithm: importing costs
/// more than verifying. Bounded; an issuer has a few keys.
const MAX_WEB_CRYPTO_KEYS: usize = 16;

type WebCryptoKeyId = ([u8; 32], JwsAlgorithm);

thread_local! {
    static WEB_CRYPTO_KEYS: RefCell<Vec<(WebCryptoKeyId, JsValue)>> =
        const { RefCell::new(Vec::new()) };
}

/// The check's key, imported into WebCrypto (once per isolate).
async fn web_crypto_key(check: &SignatureCheck) -> Option<JsValue> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    let id = (check.key_thumbprint, check.alg);
    let cached = WEB_CRYPTO_KEYS.with(|keys| {
        keys.borrow()
            .iter()
            .find(|(key_id, _)| *key_id == id)
            .map(|(_, key)| key.clone())
    });
    if cached.is_some() {
        return cached;
    }
    let (name, _) = web_crypto_algorithm(check.alg)?;
    let jwk = js_object(&[
        ("kty", "RSA".into()),
        ("n", URL_SAFE_NO_PAD.encode(&check.modulus).into()),
        ("e", URL_SAFE_NO_PAD.encode(&check.exponent).into()),
    ]);
    let algorithm = js_object(&[
        ("name", name.into()),
        ("hash", web_crypto_hash(check.alg).into()),
    ]);
    let usages = js_sys::Array::of1(&"verify".into());
    let promise = subtle_import_key("jwk", &jwk, &algorithm, false, &usages).ok()?;
    let key = JsFuture::from(promise).await.ok()?;
    WEB_CRYPTO_KEYS.with(|keys| {
        let mut keys = keys.borrow_mut();
        if keys.len() >= MAX_WEB_CRYPTO_KEYS {
            keys.remove(0);
        }
        keys.push((id, key.clone()));
    });
    Some(key)
}
