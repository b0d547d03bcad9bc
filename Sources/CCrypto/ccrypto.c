// OpenSSL glue for the variable service's authenticated variables; see ccrypto.h.
#include "ccrypto.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

static PKCS7 *ccrypto_p7_parse(const uint8_t *der, size_t len) {
    const unsigned char *p = der;
    PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)len);
    if (p7 == NULL) return NULL;
    if (!PKCS7_type_is_signed(p7)) { PKCS7_free(p7); return NULL; }
    return p7;
}

/// NID of the first signer's digest algorithm, or 0.
int ccrypto_pkcs7_digest_nid(const uint8_t *der, size_t len) {
    PKCS7 *p7 = ccrypto_p7_parse(der, len);
    if (p7 == NULL) return 0;
    STACK_OF(PKCS7_SIGNER_INFO) *infos = PKCS7_get_signer_info(p7);
    int nid = 0;
    if (infos != NULL && sk_PKCS7_SIGNER_INFO_num(infos) > 0) {
        PKCS7_SIGNER_INFO *si = sk_PKCS7_SIGNER_INFO_value(infos, 0);
        X509_ALGOR *alg = NULL;
        PKCS7_SIGNER_INFO_get0_algs(si, NULL, &alg, NULL);
        if (alg != NULL) nid = OBJ_obj2nid(alg->algorithm);
    }
    PKCS7_free(p7);
    return nid;
}

int ccrypto_nid_sha256(void) { return NID_sha256; }
int ccrypto_nid_sha384(void) { return NID_sha384; }
int ccrypto_nid_sha512(void) { return NID_sha512; }

/// Pkcs7Verify as edk2 does it: the anchor is the only trusted certificate, partial
/// chains are allowed, validity periods are not checked, any purpose, binary content.
/// Returns 1 when the detached signature over `data` verifies.
int ccrypto_pkcs7_verify(const uint8_t *p7der, size_t p7len, const uint8_t *anchor, size_t anchorlen,
                                       const uint8_t *data, size_t datalen) {
    int ok = 0;
    PKCS7 *p7 = ccrypto_p7_parse(p7der, p7len);
    const unsigned char *a = anchor;
    X509 *ca = d2i_X509(NULL, &a, (long)anchorlen);
    X509_STORE *store = X509_STORE_new();
    BIO *bio = BIO_new_mem_buf(data, (int)datalen);
    if (p7 != NULL && ca != NULL && store != NULL && bio != NULL && X509_STORE_add_cert(store, ca) == 1) {
        X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_NO_CHECK_TIME);
        X509_STORE_set_purpose(store, X509_PURPOSE_ANY);
        ok = PKCS7_verify(p7, NULL, store, bio, NULL, PKCS7_BINARY) == 1;
    }
    BIO_free(bio);
    X509_STORE_free(store);
    X509_free(ca);
    PKCS7_free(p7);
    return ok;
}

/// DER of one X.509 certificate; the caller frees it.
static uint8_t *ccrypto_x509_der(X509 *x, size_t *len) {
    unsigned char *out = NULL;
    int n = i2d_X509(x, &out);
    if (n <= 0) return NULL;
    *len = (size_t)n;
    return out;
}

/// The certificates the SignedData carries: the signer and the top-level one (the last in
/// the certificate list, edk2 `Pkcs7GetSigners`' TrustedCert). Both DER, caller frees.
int ccrypto_pkcs7_signers(const uint8_t *der, size_t len, uint8_t **signer, size_t *signerLen,
                                        uint8_t **top, size_t *topLen) {
    PKCS7 *p7 = ccrypto_p7_parse(der, len);
    if (p7 == NULL) return 0;
    int ok = 0;
    STACK_OF(X509) *certs = p7->d.sign->cert;
    STACK_OF(X509) *signers = PKCS7_get0_signers(p7, NULL, 0);
    if (certs != NULL && sk_X509_num(certs) > 0 && signers != NULL && sk_X509_num(signers) > 0) {
        *signer = ccrypto_x509_der(sk_X509_value(signers, 0), signerLen);
        *top = ccrypto_x509_der(sk_X509_value(certs, sk_X509_num(certs) - 1), topLen);
        ok = *signer != NULL && *top != NULL;
    }
    sk_X509_free(signers);
    PKCS7_free(p7);
    return ok;
}

/// 1 if the certificate parses and carries an RSA public key (edk2 RsaGetPublicKeyFromX509).
int ccrypto_x509_has_rsa_key(const uint8_t *der, size_t len) {
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x == NULL) return 0;
    EVP_PKEY *k = X509_get0_pubkey(x);
    int ok = k != NULL && EVP_PKEY_base_id(k) == EVP_PKEY_RSA;
    X509_free(x);
    return ok;
}

/// The subject CN as UTF-8 (without NUL), and the tbsCertificate DER. Caller frees both.
int ccrypto_x509_cn_and_tbs(const uint8_t *der, size_t len, uint8_t **cn, size_t *cnLen,
                                          uint8_t **tbs, size_t *tbsLen) {
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x == NULL) return 0;
    int ok = 0;
    X509_NAME *name = X509_get_subject_name(x);
    int idx = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
    unsigned char *utf8 = NULL;
    int n = idx >= 0 ? ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx))) : 0;
    if (n < 0) n = 0;
    *cn = malloc(n > 0 ? (size_t)n : 1);
    if (*cn != NULL && n > 0) memcpy(*cn, utf8, (size_t)n);
    *cnLen = (size_t)n;
    OPENSSL_free(utf8);
    unsigned char *t = NULL;
    int tn = i2d_re_X509_tbs(x, &t);
    if (tn > 0 && *cn != NULL) {
        *tbs = malloc((size_t)tn);
        if (*tbs != NULL) { memcpy(*tbs, t, (size_t)tn); *tbsLen = (size_t)tn; ok = 1; }
    }
    OPENSSL_free(t);
    X509_free(x);
    return ok;
}

/// SHA-256/384/512 by NID into `out` (64 bytes); returns the digest length or 0.
unsigned ccrypto_digest(int nid, const uint8_t *data, size_t len, uint8_t *out) {
    const EVP_MD *md = EVP_get_digestbynid(nid);
    unsigned n = 0;
    if (md == NULL || EVP_Digest(data, len, out, &n, md, NULL) != 1) return 0;
    return n;
}

void ccrypto_free(void *p) { OPENSSL_free(p); }


static uint8_t *ccrypto_bio_bytes(BIO *b, size_t *len) {
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    if (n <= 0) return NULL;
    uint8_t *out = malloc((size_t)n);
    if (out == NULL) return NULL;
    memcpy(out, data, (size_t)n);
    *len = (size_t)n;
    return out;
}

/// A lab key: RSA-2048 and a self-signed SHA-256 X.509 v3 certificate with subject CN `cn`,
/// valid for ten years. Outputs the certificate DER and PEM and the key PEM (malloc'd).
int ccrypto_make_self_signed(const char *cn, uint8_t **certDer, size_t *certDerLen,
                                           uint8_t **certPem, size_t *certPemLen, uint8_t **keyPem, size_t *keyPemLen) {
    int ok = 0;
    EVP_PKEY *key = EVP_RSA_gen(2048);
    X509 *x = X509_new();
    BIO *kb = BIO_new(BIO_s_mem()), *cb = BIO_new(BIO_s_mem());
    unsigned char serial[16];
    if (key == NULL || x == NULL || kb == NULL || cb == NULL || RAND_bytes(serial, sizeof serial) != 1) goto done;
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    if (bn == NULL) goto done;
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_set_version(x, 2);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 60L * 60 * 24 * 3650);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, key);
    if (X509_sign(x, key, EVP_sha256()) <= 0) goto done;
    if (PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL) != 1 || PEM_write_bio_X509(cb, x) != 1) goto done;
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    if (n <= 0) goto done;
    *certDer = malloc((size_t)n);
    if (*certDer != NULL) { memcpy(*certDer, der, (size_t)n); *certDerLen = (size_t)n; }
    OPENSSL_free(der);
    *certPem = ccrypto_bio_bytes(cb, certPemLen);
    *keyPem = ccrypto_bio_bytes(kb, keyPemLen);
    ok = *certDer != NULL && *certPem != NULL && *keyPem != NULL;
done:
    BIO_free(kb); BIO_free(cb); X509_free(x); EVP_PKEY_free(key);
    return ok;
}

