// The one function of sodium-native (libsodium) that cairn uses; the package ships no types.
declare module 'sodium-native' {
  /** True when `signature` is a valid Ed25519 signature of `message` under `publicKey` (32 bytes). */
  export function crypto_sign_verify_detached(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean;
}
