#ifndef EFIVARFS_BRIDGE_CCRYPTO_H
#define EFIVARFS_BRIDGE_CCRYPTO_H

// PKCS#7 and X.509 through OpenSSL's libcrypto, the library edk2's BaseCryptLib wraps
// (CryptoPkg/Library/BaseCryptLib/Pk/CryptPkcs7VerifyCommon.c). Every OpenSSL object stays
// inside ccrypto.c: Swift passes DER bytes in and gets DER bytes or a verdict out.
#include <stddef.h>
#include <stdint.h>

/// NID of the first signer's digest algorithm in a DER SignedData, or 0.
int ccrypto_pkcs7_digest_nid(const uint8_t *der, size_t len);
int ccrypto_nid_sha256(void);
int ccrypto_nid_sha384(void);
int ccrypto_nid_sha512(void);

/// Pkcs7Verify as edk2 does it: the anchor is the only trusted certificate, partial chains
/// are allowed, validity periods are not checked, any purpose, binary detached content.
/// Returns 1 when the detached signature over `data` verifies.
int ccrypto_pkcs7_verify(const uint8_t *p7der, size_t p7len, const uint8_t *anchor, size_t anchorlen,
                         const uint8_t *data, size_t datalen);

/// The certificates the SignedData carries: the signer and the top-level one (the last in
/// the certificate list, edk2 `Pkcs7GetSigners`' TrustedCert). Both DER; free them with
/// ccrypto_free. Returns 1 on success.
int ccrypto_pkcs7_signers(const uint8_t *der, size_t len, uint8_t **signer, size_t *signerLen,
                          uint8_t **top, size_t *topLen);

/// 1 if the certificate parses and carries an RSA public key (edk2 RsaGetPublicKeyFromX509).
int ccrypto_x509_has_rsa_key(const uint8_t *der, size_t len);

/// The subject CN as UTF-8 (without NUL) and the tbsCertificate DER; free both with free().
int ccrypto_x509_cn_and_tbs(const uint8_t *der, size_t len, uint8_t **cn, size_t *cnLen,
                            uint8_t **tbs, size_t *tbsLen);

/// SHA-256/384/512 by NID into `out` (64 bytes); returns the digest length or 0.
unsigned ccrypto_digest(int nid, const uint8_t *data, size_t len, uint8_t *out);

/// Frees memory OpenSSL allocated (ccrypto_pkcs7_signers' outputs).
void ccrypto_free(void *p);

/// A lab key: RSA-2048 and a self-signed SHA-256 X.509 v3 certificate with subject CN `cn`,
/// valid for ten years. Outputs the certificate DER and PEM and the key PEM; free them with
/// free(). Returns 1 on success.
int ccrypto_make_self_signed(const char *cn, uint8_t **certDer, size_t *certDerLen,
                             uint8_t **certPem, size_t *certPemLen, uint8_t **keyPem, size_t *keyPemLen);

#endif
