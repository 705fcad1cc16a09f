// Checks, in the browser with WebCrypto, that an event shown is in the signed log:
// - the canonical record the server hashed decodes to exactly the event shown;
// - its RFC 6962 leaf hash, SHA-256(0x00 || record), walks the inclusion proof to a root;
// - that root and tree size are those of a checkpoint (a C2SP signed note) whose ECDSA P-256
//   signature verifies with the log's public key, and whose origin is the tenant's log.
// Each failure is thrown as a VerifyError saying exactly which step failed.

export class VerifyError extends Error {}

/// A JSON.parse reviver that keeps every number exactly as written where a double would
/// change it (integers past 2^53, long decimals): as raw JSON, which JSON.stringify writes back
/// unchanged. So the console shows audit values exactly, and compares them exactly.
export function exactNumbers(key, value, context) {
  if (typeof value === 'number' && context?.source !== undefined && String(value) !== context.source) {
    return JSON.rawJSON(context.source);
  }
  return value;
}

/// Whether `value` is a number kept as raw JSON by `exactNumbers`.
export const isRaw = (value) => JSON.isRawJSON(value);

const te = new TextEncoder();

export function fromBase64(text) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new VerifyError(`not standard base64: ${text.slice(0, 40)}`);
  }
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

export function toBase64(bytes) {
  let raw = '';
  for (const b of bytes) raw += String.fromCharCode(b);
  return btoa(raw);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

export const leafHash = (record) => sha256(concat(Uint8Array.of(0), record));
const nodeHash = (left, right) => sha256(concat(Uint8Array.of(1), left, right));

/// RFC 9162 §2.1.3.2: the root that `proof` leads to from leaf `index` of a tree of `size`.
export async function rootFromInclusionProof(index, size, leaf, proof) {
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  if (fn > sn) throw new VerifyError(`log index ${index} is outside a tree of ${size}`);
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw new VerifyError('the inclusion proof is longer than the tree is deep');
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new VerifyError('the inclusion proof is shorter than the tree is deep');
  return r;
}

/// RFC 9162 §2.1.4.2: whether `proof` shows the tree of `second` leaves (root `secondRoot`)
/// extends the tree of `first` leaves (root `firstRoot`). Throws what failed.
export async function verifyConsistency(first, second, firstRoot, secondRoot, proof) {
  let fn = BigInt(first) - 1n;
  let sn = BigInt(second) - 1n;
  if (first < 1 || first > second) throw new VerifyError(`no consistency proof from size ${first} to ${second}`);
  if (BigInt(first) === BigInt(second)) {
    if (proof.length || !equal(firstRoot, secondRoot)) throw new VerifyError(`two checkpoints of size ${first} with different roots: the log forked`);
    return;
  }
  let path = proof;
  if ((BigInt(first) & (BigInt(first) - 1n)) === 0n) path = [firstRoot, ...proof];
  if (!path.length) throw new VerifyError('the consistency proof is empty');
  while ((fn & 1n) === 1n) { fn >>= 1n; sn >>= 1n; }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0n) throw new VerifyError('the consistency proof is too long');
    if ((fn & 1n) === 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n || !equal(fr, firstRoot) || !equal(sr, secondRoot)) {
    throw new VerifyError(`the log of size ${second} does not extend the one of size ${first}: it was rewritten`);
  }
}

/// The log's public key: a verifier key `<name>+<8 hex digits of the key ID>+<base64(0x02 ||
/// P-256 SPKI DER)>`, or the PEM `sentinel public-key` prints (then any key name is taken,
/// the key ID alone picks the signature, and the origin must be that name's log).
export async function parseVerifierKey(text) {
  let name = null;
  let spki;
  let given = null;
  const pem = /-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]+)-----END PUBLIC KEY-----/.exec(text);
  if (pem) {
    spki = fromBase64(pem[1].replace(/\s+/g, ''));
  } else {
    // Names and IDs hold no `+`; base64 may.
    const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(text.trim());
    if (!m) {
      throw new VerifyError('the public key is neither a verifier key `<name>+<8 hex digits>+<base64>` nor a PEM public key');
    }
    name = m[1];
    given = Uint8Array.from(m[2].match(/../g), (h) => parseInt(h, 16));
    const bytes = fromBase64(m[3]);
    if (bytes[0] !== 0x02) throw new VerifyError('the public key is not an ECDSA (type 0x02) key');
    spki = bytes.slice(1);
  }
  const keyId = (await sha256(spki)).slice(0, 4);
  if (given && !equal(keyId, given)) throw new VerifyError('the public key\'s ID does not match its key');
  let key;
  try {
    key = await crypto.subtle.importKey('spki', spki, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
  } catch (e) {
    throw new VerifyError(`the public key is not a P-256 key: ${e.message}`);
  }
  return { name, keyId, key };
}

/// An ASN.1 DER ECDSA signature as WebCrypto's raw r || s, 32 bytes each.
export function derToRaw(der) {
  const fail = () => { throw new VerifyError('the signature is not a DER ECDSA signature'); };
  let at = 0;
  const byte = () => (at < der.length ? der[at++] : fail());
  if (byte() !== 0x30) fail();
  const length = byte();
  if (length & 0x80 || length !== der.length - 2) fail();
  const integer = () => {
    if (byte() !== 0x02) fail();
    const n = byte();
    if (n < 1 || n > 33 || at + n > der.length) fail();
    let value = der.slice(at, at + n);
    at += n;
    while (value.length > 32 && value[0] === 0) value = value.slice(1);
    if (value.length > 32) fail();
    return concat(new Uint8Array(32 - value.length), value);
  };
  const r = integer();
  const s = integer();
  if (at !== der.length) fail();
  return concat(r, s);
}

/// Opens a signed note with `key`: the signature by that key must be there and verify.
/// Answers the checkpoint's origin, size and root, and the name the key signed with.
export async function openCheckpoint(note, key) {
  const split = note.indexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) throw new VerifyError('the checkpoint is not a signed note');
  const text = note.slice(0, split + 1);
  const signatures = note.slice(split + 2, -1).split('\n');
  let signer = null;
  for (const line of signatures) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new VerifyError(`a signature line of the checkpoint is malformed: ${line.slice(0, 60)}`);
    const sig = fromBase64(m[2]);
    if ((key.name !== null && m[1] !== key.name) || sig.length < 5 || !equal(sig.slice(0, 4), key.keyId)) continue;
    const ok = await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key.key, derToRaw(sig.slice(4)), te.encode(text));
    if (!ok) throw new VerifyError(`the checkpoint's signature by ${m[1]} does not verify: the note was changed or not signed by this key`);
    signer = m[1];
  }
  if (!signer) throw new VerifyError(`the checkpoint has no signature by ${key.name ?? 'the public key'} with this key's ID`);
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3 || !/^(0|[1-9][0-9]*)$/.test(lines[1])) throw new VerifyError('the checkpoint\'s text is not origin, size, root');
  const root = fromBase64(lines[2]);
  if (root.length !== 32) throw new VerifyError('the checkpoint\'s root is not 32 bytes');
  return { origin: lines[0], size: BigInt(lines[1]), root, signer };
}

/// Deep equality of two parsed JSON values (object member order aside).
export function sameJson(a, b) {
  if (a === b) return true;
  if (isRaw(a) || isRaw(b)) return isRaw(a) && isRaw(b) && a.rawJSON === b.rawJSON;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && sameJson(a[k], b[k]));
}

/// Checks `proof` (GET /events/{id}/proof) for the event `shown` (GET /events/{id}) of
/// `tenant`, and the latest checkpoint (GET /checkpoint), with the verifier key text;
/// `consistency(from, to)` answers GET /consistency when the latest is the larger.
/// Answers what was verified; throws a VerifyError naming the first step that failed.
export async function verifyEvent({ proof, checkpoint, shown, tenant, keyText, consistency }) {
  const key = await parseVerifierKey(keyText);
  const record = proof.canonical_record;
  let decoded;
  try { decoded = JSON.parse(record, exactNumbers); } catch { throw new VerifyError('the canonical record is not JSON'); }
  if (!decoded || decoded.v !== 1 || !sameJson(decoded.event, shown)) {
    throw new VerifyError('the record in the log is not the event shown: its hashed bytes say something else');
  }
  const leaf = await leafHash(te.encode(record));
  const signed = await openCheckpoint(proof.checkpoint.checkpoint, key);
  // The log of this tenant, by this key: `sentinel/<stack>/<tenant>`.
  const origin = `${signed.signer}/${tenant}`;
  if (signed.origin !== origin) throw new VerifyError(`the checkpoint is of log ${signed.origin}, not ${origin}`);
  if (signed.size !== BigInt(proof.tree_size)) throw new VerifyError(`the proof is for a tree of ${proof.tree_size}, the signed checkpoint's is ${signed.size}`);
  const proofHashes = proof.inclusion_proof.map(fromBase64);
  const root = await rootFromInclusionProof(proof.log_index, proof.tree_size, leaf, proofHashes);
  if (!equal(root, signed.root)) {
    throw new VerifyError(`the event's leaf does not lead to the signed root of tree ${signed.size}: the event was changed after it was logged`);
  }
  const latest = await openCheckpoint(checkpoint.checkpoint, key);
  if (latest.origin !== origin) throw new VerifyError(`the latest checkpoint is of log ${latest.origin}, not ${origin}`);
  if (latest.size < signed.size) throw new VerifyError(`the latest checkpoint (${latest.size}) is older than the proof's (${signed.size})`);
  if (latest.size > signed.size) {
    // Signed since the proof was made: it must extend the proof's tree.
    const answer = await consistency(signed.size, latest.size);
    await verifyConsistency(signed.size, latest.size, signed.root, latest.root, answer.consistency_proof.map(fromBase64));
  } else if (!equal(latest.root, signed.root)) {
    throw new VerifyError(`two checkpoints of size ${latest.size} with different roots: the log forked`);
  }
  return { index: proof.log_index, size: Number(signed.size), keyName: signed.signer, root: toBase64(signed.root), latest: Number(latest.size) };
}
