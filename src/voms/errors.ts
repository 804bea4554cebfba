import { WnodError } from '../util/errors.js';

/** Why a proxy or its VOMS attribute certificate was refused; stable codes a caller can match on. */
export type VomsErrorCode =
  | 'expired-ac'                 // AC outside its validity (±5 min), also "not yet valid"
  | 'unknown-aa'                 // no .lsc entry / legacy .pem in the vomsdir names the AC's issuer
  | 'untrusted-aa-chain'         // the AA certificate does not chain to the CA dir
  | 'bad-ac-signature'           // the AA key did not sign these acinfo bytes
  | 'ac-holder-mismatch'         // the AC was issued to another certificate
  | 'ac-target-mismatch'         // the AC names targets and this host is not one of them
  | 'fqan-outside-vo'            // an FQAN does not start with /<vo> of the AC's policy authority
  | 'no-ac'                      // no VOMS AC in the leaf or any parent proxy
  | 'unknown-critical-extension' // a critical extension we do not understand (AC or certificate)
  | 'broken-proxy-chain'         // the proxy chain or the EEC's chain to the CA dir does not verify
  | 'unreadable'                 // the proxy file could not be read (missing, permission, not a file)
  | 'malformed';                 // bad PEM/DER/AC structure, FQAN syntax, missing required fields

/** An identity check failed; `code` says which one, `message` names the certificate, field or byte offset. */
export class VomsError extends WnodError {
  declare readonly code: VomsErrorCode;
  constructor(code: VomsErrorCode, message: string) {
    super(code, message);
  }
}
