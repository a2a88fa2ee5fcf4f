// The functions of sodium-native (libsodium) that cairn uses; the package ships no types.
declare module 'sodium-native' {
  /** Fills `publicKey` (32 bytes) and `secretKey` (64 bytes) with the Ed25519 key pair of `seed` (32 bytes). */
  export function crypto_sign_seed_keypair(publicKey: Uint8Array, secretKey: Uint8Array, seed: Uint8Array): void;
  /** Writes the Ed25519 signature (64 bytes) of `message` under `secretKey` into `signature`. */
  export function crypto_sign_detached(signature: Uint8Array, message: Uint8Array, secretKey: Uint8Array): void;
  /** True when `signature` is a valid Ed25519 signature of `message` under `publicKey` (32 bytes). */
  export function crypto_sign_verify_detached(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean;
  /** Maps an Ed25519 public key (32 bytes) to its X25519 form; throws for a point with none. */
  export function crypto_sign_ed25519_pk_to_curve25519(curvePublicKey: Uint8Array, edPublicKey: Uint8Array): void;
  /** Maps an Ed25519 secret key (64 bytes) to its X25519 form (32 bytes). */
  export function crypto_sign_ed25519_sk_to_curve25519(curveSecretKey: Uint8Array, edSecretKey: Uint8Array): void;
  /** X25519: writes secretKey·publicKey into `shared` (32 bytes); throws when the result is all zeros. */
  export function crypto_scalarmult(shared: Uint8Array, secretKey: Uint8Array, publicKey: Uint8Array): void;
}
