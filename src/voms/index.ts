// The VOMS identity of a proxy: what others import.
export { type VomsIdentity, type VerifyOptions, verifyProxyFile, verifyProxyPem, MAX_PROXY_FILE } from './verify.js';
export { VomsError, type VomsErrorCode } from './errors.js';
export { canonicalFqan, canonicalFqanPattern, fqanMatches, fqanInVo, fqanVo } from './fqan.js';
