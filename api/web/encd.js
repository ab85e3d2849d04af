// encd in the browser: check a title answer against the log key you trust, and sign the
// request that asks for it.  Nothing here leaves the page: the key file is read by the
// browser, and the checks run on its own SHA-256 and Ed25519 (Web Cryptography API).
//
// The formats are docs/formats/log.md (entries, the tree, checkpoints, receipts) and
// docs/api.md §6 (request signatures); docs/web.md says what this page checks.  The Python
// that does the same is encd.note, encd.checkpoint, encd.tlogproof, encd.merkle and
// api.client.verify_title; tests/api/test_web.py holds the two to the same answers.

const encoder = new TextEncoder();
const MAX_SIZE = (1n << 64n) - 1n;
const MAX_NOTE_SIGNATURES = 100;
const MAX_PROOF_HASHES = 64;
const PROOF_HEADER = "c2sp.org/tlog-proof@v1";
const EVENT_ID = /^[0-9a-f]{64}$/;
const DECIMAL = /^(0|[1-9][0-9]*)$/;
const MAX_NOTE_SIZE = 1 << 20;
// What Python's str.isspace() calls a space (encd.keys.check_key_name refuses it in a key
// name), "+", and the C0 controls and DEL.
const KEY_NAME_FORBIDDEN =
  /[\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000+\x00-\x1f\x7f]/;
// A party id as a key's name in a request's keyid: printable ASCII, no space, '"', "\\" or "+".
const PARTY_ID = /^[\x21\x23-\x2a\x2c-\x5b\x5d-\x7e]{1,200}$/;
// The y-coordinates of Ed25519's eight points of small order (identity, order 2, 4 and 8),
// and y = p and p + 1, which name two of them again: a public key that is one of these (its
// sign bit aside) lets anyone forge signatures that some verifiers accept.  libsodium, which
// the Python side uses, refuses them; the browser's Ed25519 may not, so the page does.
const SMALL_ORDER_Y = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
];
const PBKDF2_MAX_ITERATIONS = 10_000_000;

/** A check that did not pass: `step` names it (as docs/web.md numbers them). */
export class CheckFailed extends Error {
  constructor(step, message) {
    super(message);
    this.name = "CheckFailed";
    this.step = step;
  }
}

function fail(step, message) {
  throw new CheckFailed(step, message);
}

// --- bytes ---------------------------------------------------------------------------

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function fromHex(text) {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function toBase64(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text);
}

/** Standard base64 with padding, in its one canonical spelling (docs/formats/log.md). */
export function fromBase64(text, step, what) {
  let binary;
  try {
    binary = atob(text);
  } catch {
    fail(step, `${what}: ${show(text)} is not valid base64`);
  }
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  if (toBase64(bytes) !== text) fail(step, `${what}: ${show(text)} is not canonical base64`);
  return bytes;
}

/** Padded standard base64 as Python's b64decode(validate=True) and Go's StdEncoding read
 * it, unused bits and all: its bytes and whether `text` is their canonical spelling, or
 * null when it is not base64. */
function readBase64(text) {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
  let binary;
  try {
    binary = atob(text);
  } catch {
    return null;
  }
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return { bytes, canonical: toBase64(bytes) === text };
}

function show(value, limit = 60) {
  const text = typeof value === "string" ? JSON.stringify(value) : String(value);
  return text.length > limit ? text.slice(0, limit) + "…" : text;
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** Why this browser cannot run the checks, or "" when it can. */
export function unsupported() {
  if (!globalThis.isSecureContext || !globalThis.crypto?.subtle) {
    return (
      "this page must be opened over HTTPS, or on this machine (localhost): browsers " +
      "give pages served over plain HTTP elsewhere no Web Cryptography API"
    );
  }
  return "";
}

const NO_ED25519 =
  "this browser has no Ed25519 in its Web Cryptography API: use a recent Chromium, Chrome, " +
  "Firefox or Safari, or the encd command";

async function importEd25519(format, data, usages, extractable = false) {
  try {
    return await crypto.subtle.importKey(format, data, { name: "Ed25519" }, extractable, usages);
  } catch (error) {
    if (error.name === "NotSupportedError") fail("browser", NO_ED25519);
    throw error;
  }
}

async function ed25519Verify(publicKey, signature, message) {
  if (signature.length !== 64) return false;
  const key = await importEd25519("raw", publicKey, ["verify"]);
  return crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
}

// --- keys: C2SP signed-note verifier keys --------------------------------------------

/** The 4-byte key hash of a key named `name` of signature type `type` (0x01: Ed25519). */
export async function keyHash(name, publicKey, type = 0x01) {
  const digest = await sha256(concat(encoder.encode(name + "\n"), Uint8Array.of(type), publicKey));
  return digest.slice(0, 4);
}

function checkKeyName(name, step, what) {
  if (!name) fail(step, `${what}: the key name is empty`);
  if (KEY_NAME_FORBIDDEN.test(name)) {
    fail(step, `${what}: the key name ${show(name)} has a space, a "+" or a control character`);
  }
}

/** `<name>+<8 hex digits>+<base64(0x01 || 32-byte key)>`, its key hash checked. */
export async function parseVerifierKey(text) {
  const step = "key";
  const trimmed = text.trim();
  const first = trimmed.indexOf("+");
  const second = first < 0 ? -1 : trimmed.indexOf("+", first + 1);
  if (second < 0) fail(step, "log key: expected <name>+<8 hex digits>+<base64 key>");
  const name = trimmed.slice(0, first);
  const hashHex = trimmed.slice(first + 1, second);
  checkKeyName(name, step, "log key");
  if (!/^[0-9a-f]{8}$/.test(hashHex)) {
    fail(step, `log key: the key hash must be 8 lowercase hex digits, got ${show(hashHex)}`);
  }
  const blob = fromBase64(trimmed.slice(second + 1), step, "log key");
  if (blob.length !== 33 || blob[0] !== 0x01) {
    fail(step, "log key: expected type 0x01 (Ed25519) followed by a 32-byte public key");
  }
  const key = blob.slice(1);
  const y = Uint8Array.from(key);
  y[31] &= 0x7f;
  if (SMALL_ORDER_Y.includes(hex(y))) {
    fail(step, "log key: a point of small order, which signs nothing (anyone could forge its signatures)");
  }
  const hash = await keyHash(name, key);
  if (hex(hash) !== hashHex) {
    fail(step, `log key: key hash ${hashHex} does not match the key (it is ${hex(hash)})`);
  }
  return { name, hash, key, text: trimmed };
}

// --- signed notes and checkpoints ----------------------------------------------------

/** Split a signed note into its text and signature lines (docs/formats/log.md §3). */
export function parseNote(text, step) {
  // The text up to the last blank line, its newline included; then the signature lines.
  if (encoder.encode(text).length > MAX_NOTE_SIZE) fail(step, "the note is more than 1 MiB");
  if (/[\x00-\x09\x0b-\x1f]/.test(text)) fail(step, "the note has a control character");
  const cut = text.lastIndexOf("\n\n");
  if (cut < 0) fail(step, "the note has no blank line between its text and its signatures");
  const body = text.slice(0, cut + 1);
  const block = text.slice(cut + 2);
  if (!block.endsWith("\n")) fail(step, "the note's signature lines must end with a newline");
  const lines = block.slice(0, -1).split("\n");
  if (lines.length > MAX_NOTE_SIGNATURES) {
    fail(step, `the note has ${lines.length} signatures, more than ${MAX_NOTE_SIGNATURES}`);
  }
  const signatures = lines.map((line, i) => {
    const where = `signature line ${i + 1}`;
    if (!line.startsWith("\u2014 ")) fail(step, `${where} must start with an em dash and a space`);
    const parts = line.slice(2).split(" ");
    if (parts.length !== 2) fail(step, `${where}: expected "— <key name> <base64 signature>"`);
    checkKeyName(parts[0], step, where);
    // Another key's line is ignored however its base64 is spelled (signed-note; Go reads
    // it leniently): only the trusted key's line must be canonical (openCheckpoint).
    const read = readBase64(parts[1]);
    if (read === null) fail(step, `${where}: ${show(parts[1])} is not valid base64`);
    const blob = read.bytes;
    if (blob.length < 5) fail(step, `${where}: ${blob.length} bytes, too short for a key hash`);
    return { name: parts[0], hash: blob.slice(0, 4), signature: blob.slice(4), canonical: read.canonical };
  });
  return { text: body, signatures };
}

/** Checkpoint note text: origin, tree size, base64 root, any extension lines. */
export function parseCheckpoint(body, step) {
  if (!body.endsWith("\n")) fail(step, "the checkpoint text must end with a newline");
  const lines = body.slice(0, -1).split("\n");
  if (lines.length < 3) fail(step, "a checkpoint has at least 3 lines: origin, tree size, root");
  const [origin, sizeLine, rootLine, ...extensions] = lines;
  if (!origin) fail(step, "the checkpoint's origin (line 1) is empty");
  const size = decimal(sizeLine, step, "the checkpoint's tree size (line 2)");
  const root = fromBase64(rootLine, step, "the checkpoint's root (line 3)");
  if (root.length !== 32) fail(step, `the checkpoint's root is ${root.length} bytes, not 32`);
  extensions.forEach((line, i) => {
    if (!line) fail(step, `checkpoint line ${i + 4} is empty; extension lines must not be`);
  });
  return { origin, size, root };
}

function decimal(text, step, what) {
  if (!DECIMAL.test(text)) fail(step, `${what} must be ASCII decimal without leading zeros`);
  if (text.length > 20 || BigInt(text) > MAX_SIZE) fail(step, `${what} is more than 2^64-1`);
  return BigInt(text);
}

/** The checkpoint in `signed`, once the log key's signature on it verifies (log.md §3). */
export async function openCheckpoint(signed, logKey) {
  const step = "checkpoint";
  const note = parseNote(signed, step);
  let verified = false;
  for (const sig of note.signatures) {
    if (sig.name !== logKey.name || !equal(sig.hash, logKey.hash)) continue; // another key's
    if (!sig.canonical) fail(step, `the signature by ${logKey.name} is not canonical base64`);
    if (!(await ed25519Verify(logKey.key, sig.signature, encoder.encode(note.text)))) {
      fail(step, `the signature by ${logKey.name} does not verify: the checkpoint was changed`);
    }
    verified = true;
  }
  if (!verified) {
    const names = note.signatures.map((s) => `${s.name}+${hex(s.hash)}`).join(", ") || "none";
    fail(step, `no signature by the trusted log key ${logKey.name}+${hex(logKey.hash)} (found: ${names})`);
  }
  const checkpoint = parseCheckpoint(note.text, step);
  if (checkpoint.origin !== logKey.name) {
    fail(step, `origin ${show(checkpoint.origin)} is not the log key's name ${show(logKey.name)}`);
  }
  checkpoint.signatures = note.signatures.length;
  return checkpoint;
}

// --- receipts (C2SP tlog-proof) and the tree ------------------------------------------

export function parseTlogProof(text) {
  const step = "proof";
  if (!text.isWellFormed()) fail(step, "the tlog-proof is not well-formed Unicode (a lone surrogate)");
  const cut = text.indexOf("\n\n");
  if (cut < 0) fail(step, "the tlog-proof has no empty line before its checkpoint");
  const lines = text.slice(0, cut).split("\n");
  if (lines[0] !== PROOF_HEADER) fail(step, `line 1 must be ${show(PROOF_HEADER)}`);
  let at = 1;
  if (at < lines.length && lines[at].startsWith("extra ")) {
    // Not authenticated, so only carried along; but it must be what the format says it is.
    if (fromBase64(lines[at].slice(6), step, "the extra line").length === 0) {
      fail(step, "the extra line is empty; a proof with no extra data has no extra line");
    }
    at++;
  }
  const index = /^index (.*)$/.exec(lines[at] ?? "");
  if (!index) fail(step, `line ${at + 1} must be "index <N>"`);
  const proof = lines.slice(at + 1).map((line, j) => {
    const hash = fromBase64(line, step, `proof hash ${j + 1}`);
    if (hash.length !== 32) fail(step, `proof hash ${j + 1} is ${hash.length} bytes, not 32`);
    return hash;
  });
  if (proof.length > MAX_PROOF_HASHES) fail(step, `${proof.length} proof hashes, more than 64`);
  // A checkpoint begins with its origin, never a hash: a hash there means an empty line came
  // among the proof's hashes, and the fault is the proof's (encd.tlogproof says the same).
  const first = text.slice(cut + 2).split("\n", 1)[0];
  if (/^[A-Za-z0-9+/]{43}=$/.test(first)) {
    fail(step, `line ${lines.length + 2} is a hash after the empty line that ends the proof's hashes`);
  }
  return {
    index: decimal(index[1], step, "the index"),
    proof,
    checkpoint: text.slice(cut + 2),
  };
}

/** RFC 6962/9162 leaf hash of a log entry: event id (32 bytes) || sequenced_at (8, big-endian). */
export async function leafHash(eventId, sequencedAt) {
  const entry = new Uint8Array(40);
  entry.set(fromHex(eventId), 0);
  new DataView(entry.buffer).setBigUint64(32, BigInt(sequencedAt));
  return sha256(concat(Uint8Array.of(0x00), entry));
}

async function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(0x01), left, right));
}

/** RFC 9162 §2.1.3.2: the root that `proof` leads to from `leaf` at `index` in a tree of
 * `size`, or a CheckFailed("inclusion") when the proof cannot be one. */
export async function rootFromInclusion(leaf, index, size, proof) {
  const step = "inclusion";
  index = BigInt(index);
  size = BigInt(size);
  if (index < 0n || index >= size) fail(step, `index ${index} is not in a tree of size ${size}`);
  let fn = index;
  let sn = size - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) fail(step, "the proof has more hashes than the tree needs");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) fail(step, "the proof has fewer hashes than the tree needs");
  return r;
}

export async function verifyInclusion(leaf, index, size, proof, root) {
  const hashes = [["the leaf hash", leaf], ["the root", root], ...proof.map((p, i) => [`proof hash ${i + 1}`, p])];
  for (const [what, hash] of hashes) {
    if (hash.length !== 32) fail("inclusion", `${what} is ${hash.length} bytes, not 32 (SHA-256)`);
  }
  if (proof.length > MAX_PROOF_HASHES) fail("inclusion", `${proof.length} proof hashes, more than 64`);
  const computed = await rootFromInclusion(leaf, index, size, proof);
  if (!equal(computed, root)) {
    fail("inclusion", `the proof leads to root ${hex(computed).slice(0, 16)}…, the checkpoint's is ${hex(root).slice(0, 16)}…`);
  }
}

// --- the title answer ----------------------------------------------------------------

/** Check a title answer (GET /v1/documents/{id}/title) as api.client.verify_title does:
 * (1) the answer's shape, (2) the checkpoint carries the trusted log key's signature and
 * names its origin, (3) the head event's log entry is included in that checkpoint's tree.
 * Returns the checkpoint the head is proved under. */
export async function verifyTitle(answer, logKey, docId) {
  const step = "answer";
  if (answer === null || typeof answer !== "object" || Array.isArray(answer)) {
    fail(step, "a title answer is a JSON object");
  }
  if (docId !== undefined && answer.document !== docId) {
    fail(step, `asked for the title of ${show(docId)}, got one for ${show(answer.document)}`);
  }
  if (typeof answer.head !== "string" || !EVENT_ID.test(answer.head)) {
    fail(step, `head: expected an event id (64 lowercase hex digits), got ${show(answer.head)}`);
  }
  for (const name of ["head_index", "head_sequenced_at"]) {
    const value = answer[name];
    if (!Number.isSafeInteger(value) || value < 0) {
      fail(step, `${name}: expected a whole number 0 or more, got ${show(value)}`);
    }
  }
  if (typeof answer.tlog_proof !== "string") fail(step, "tlog_proof: expected a string");
  const receipt = parseTlogProof(answer.tlog_proof);
  if (receipt.index !== BigInt(answer.head_index)) {
    fail("proof", `the proof is for log index ${receipt.index}, not the head's ${answer.head_index}`);
  }
  const checkpoint = await openCheckpoint(receipt.checkpoint, logKey);
  const leaf = await leafHash(answer.head, answer.head_sequenced_at);
  await verifyInclusion(leaf, receipt.index, checkpoint.size, receipt.proof, checkpoint.root);
  return checkpoint;
}

// --- the caller's key and the request's signature (RFC 9421) -------------------------

function pemBody(text) {
  const match = /-----BEGIN ([A-Z ]+)-----([\s\S]*?)-----END \1-----/.exec(text);
  if (!match) fail("key file", "not a PEM file: no -----BEGIN …----- line");
  const body = match[2].replace(/\s+/g, "");
  let binary;
  try {
    binary = atob(body);
  } catch {
    fail("key file", "the PEM's body is not base64");
  }
  return { label: match[1], der: Uint8Array.from(binary, (c) => c.charCodeAt(0)) };
}

// A small DER reader: enough for PKCS#8's EncryptedPrivateKeyInfo with PBES2.
function damaged(what) {
  fail("key file", `the encrypted key file is damaged: ${what}`);
}

function derRead(bytes, at) {
  if (at + 2 > bytes.length) damaged("it ends inside an element");
  const tag = bytes[at];
  let length = bytes[at + 1];
  let start = at + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count < 1 || count > 3) damaged("an element's length is not one DER takes");
    if (start + count > bytes.length) damaged("it ends inside an element's length");
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[start + i];
    start += count;
  }
  if (start + length > bytes.length) damaged("an element is longer than the file");
  return { tag, value: bytes.subarray(start, start + length), end: start + length };
}

/** The elements inside `bytes`; `tags` (when given) are the tags they must have, in order. */
function derChildren(bytes, ...tags) {
  const out = [];
  for (let at = 0; at < bytes.length; ) {
    const item = derRead(bytes, at);
    out.push(item);
    at = item.end;
  }
  if (out.length < tags.length) damaged(`expected ${tags.length} elements, found ${out.length}`);
  tags.forEach((tag, i) => {
    if (out[i].tag !== tag) damaged(`element ${i + 1} has tag 0x${out[i].tag.toString(16)}`);
  });
  return out;
}

const SEQUENCE = 0x30;
const OCTETS = 0x04;
const INTEGER = 0x02;
const OBJECT = 0x06;

const OID = {
  pbes2: "2a864886f70d01050d",
  pbkdf2: "2a864886f70d01050c",
  hmacSHA256: "2a864886f70d0209",
  hmacSHA1: "2a864886f70d0207",
  aes128cbc: "608648016503040102",
  aes256cbc: "60864801650304012a",
};

async function decryptPkcs8(der, passphrase) {
  const unsupported = (what) =>
    fail(
      "key file",
      `encrypted with ${what}, a scheme this page does not read (it reads PBES2: PBKDF2 with ` +
        "AES-128-CBC or AES-256-CBC, as encd keygen and OpenSSL 3 write)",
    );
  const [info] = derChildren(der, SEQUENCE);
  const [algorithm, data] = derChildren(info.value, SEQUENCE, OCTETS);
  const [oid] = derChildren(algorithm.value, OBJECT);
  if (hex(oid.value) !== OID.pbes2) unsupported(`the algorithm ${oidText(oid.value)}`);
  const [, params] = derChildren(algorithm.value, OBJECT, SEQUENCE);
  const [kdf, cipher] = derChildren(params.value, SEQUENCE, SEQUENCE);
  const [kdfOid] = derChildren(kdf.value, OBJECT);
  if (hex(kdfOid.value) !== OID.pbkdf2) unsupported(`the key derivation ${oidText(kdfOid.value)}`);
  const [, kdfParams] = derChildren(kdf.value, OBJECT, SEQUENCE);
  const kdfParts = derChildren(kdfParams.value, OCTETS, INTEGER);
  const salt = kdfParts[0].value;
  const count = kdfParts[1].value;
  if (count.length === 0 || count.length > 4 || count[0] & 0x80) damaged("PBKDF2's iteration count");
  let iterations = 0;
  for (const b of count) iterations = iterations * 256 + b;
  if (iterations < 1 || iterations > PBKDF2_MAX_ITERATIONS) {
    fail("key file", `PBKDF2 with ${iterations} iterations: this page takes 1 to ${PBKDF2_MAX_ITERATIONS}`);
  }
  let prf = "SHA-1";
  for (const part of kdfParts.slice(2)) {
    if (part.tag !== SEQUENCE) continue; // keyLength, if present, is implied by the cipher
    const [prfOid] = derChildren(part.value, OBJECT);
    if (hex(prfOid.value) === OID.hmacSHA256) prf = "SHA-256";
    else if (hex(prfOid.value) !== OID.hmacSHA1) unsupported(`the PRF ${oidText(prfOid.value)}`);
  }
  const [cipherOid] = derChildren(cipher.value, OBJECT);
  const bits = { [OID.aes128cbc]: 128, [OID.aes256cbc]: 256 }[hex(cipherOid.value)];
  if (!bits) unsupported(`the cipher ${oidText(cipherOid.value)}`);
  const [, iv] = derChildren(cipher.value, OBJECT, OCTETS);
  if (iv.value.length !== 16) damaged(`AES-CBC's IV is ${iv.value.length} bytes, not 16`);
  if (data.value.length === 0 || data.value.length % 16 !== 0) damaged("the encrypted key is not whole AES blocks");
  const base = await crypto.subtle.importKey("raw", encoder.encode(passphrase), "PBKDF2", false, ["deriveKey"]);
  const aes = await crypto.subtle.deriveKey(
    { name: "PBKDF2", salt, iterations, hash: prf },
    base,
    { name: "AES-CBC", length: bits },
    false,
    ["decrypt"],
  );
  try {
    return new Uint8Array(await crypto.subtle.decrypt({ name: "AES-CBC", iv: iv.value }, aes, data.value));
  } catch {
    fail("key file", "the passphrase is wrong");
  }
}

/** An OID in dotted decimal, for a message. */
function oidText(bytes) {
  if (bytes.length === 0) return "(empty)";
  const parts = [Math.floor(bytes[0] / 40), bytes[0] % 40];
  let value = 0;
  for (const b of bytes.slice(1)) {
    value = value * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      parts.push(value);
      value = 0;
    }
  }
  return parts.join(".");
}

/** The party's signing key from its PKCS#8 PEM file (encrypted or not), named `party`. */
export async function loadSigningKey(pemText, party, passphrase) {
  if (!PARTY_ID.test(party)) {
    fail("key file", "party id: expected printable ASCII with no space, quote, backslash or \"+\"");
  }
  const { label, der } = pemBody(pemText);
  let pkcs8 = der;
  if (label === "ENCRYPTED PRIVATE KEY") {
    if (!passphrase) fail("key file", "the key file is encrypted: give its passphrase");
    try {
      pkcs8 = await decryptPkcs8(der, passphrase);
    } catch (error) {
      if (error instanceof CheckFailed) throw error;
      damaged(error.message); // anything the browser's own code refused in it
    }
  } else if (label !== "PRIVATE KEY") {
    fail("key file", `expected a PKCS#8 "PRIVATE KEY", got "${label}"`);
  }
  // Imported twice: once to read its public key, then for signing, not extractable.
  let privateKey;
  let publicKey;
  try {
    const readable = await importEd25519("pkcs8", pkcs8, ["sign"], true);
    publicKey = fromBase64Url((await crypto.subtle.exportKey("jwk", readable)).x);
    privateKey = await importEd25519("pkcs8", pkcs8, ["sign"], false);
  } catch (error) {
    if (error instanceof CheckFailed) throw error;
    fail("key file", "not an Ed25519 private key");
  }
  const hash = await keyHash(party, publicKey);
  return { party, privateKey, hash, keyId: `${party}+${hex(hash)}` };
}

function fromBase64Url(text) {
  const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

/** Headers that sign a request for `path` (with its query, if any, already encoded as it
 * is sent) at `authority` (docs/api.md §6): with a body, its Content-Digest too, and the
 * signature covers it. */
export async function signRequest(key, method, authority, path, body = null, created = Math.floor(Date.now() / 1000)) {
  const nonce = toBase64(crypto.getRandomValues(new Uint8Array(16)))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
  const headers = {};
  const components = ['"@method"', '"@authority"', '"@path"', '"@query"'];
  const cut = path.indexOf("?");
  const query = cut < 0 ? "?" : path.slice(cut); // RFC 9421 §2.2.7: "?" when there is none
  const target = cut < 0 ? path : path.slice(0, cut);
  const lines = [`"@method": ${method}`, `"@authority": ${authority.toLowerCase()}`, `"@path": ${target}`, `"@query": ${query}`];
  if (body !== null) {
    headers["Content-Digest"] = `sha-256=:${toBase64(await sha256(body))}:`;
    components.push('"content-digest"');
    lines.push(`"content-digest": ${headers["Content-Digest"]}`);
  }
  const params =
    `(${components.join(" ")});created=${created};` +
    `nonce="${nonce}";keyid="${key.keyId}";alg="ed25519"`;
  lines.push(`"@signature-params": ${params}`);
  const signature = new Uint8Array(
    await crypto.subtle.sign({ name: "Ed25519" }, key.privateKey, encoder.encode(lines.join("\n"))),
  );
  headers["Signature-Input"] = `encd=${params}`;
  headers.Signature = `encd=:${toBase64(signature)}:`;
  return headers;
}

/** The service's JSON answer to a signed request, or a CheckFailed("service") carrying its
 * refusal (an RFC 9457 problem's status and detail). */
/** How long the pages wait for the service's answer. */
export const ANSWER_TIMEOUT_MS = 30_000;

// What a refusal most often means, for the person reading it.
const HINTS = {
  401: "is the party id yours, and this key file the one registered for it?",
  409: "the document has moved on since: read its title again",
};

/** What a request refused for its time means: this computer's clock is off the service's,
 * by as much as its answer's Date header shows (the service takes ±300 s). */
function clockHint(response) {
  const served = Date.parse(response.headers.get("date") ?? "");
  if (Number.isNaN(served)) return "is this computer's clock right?";
  const off = Math.round((Date.now() - served) / 1000);
  const way = off > 0 ? "ahead of" : "behind";
  const much = Math.abs(off) >= 120 ? `${Math.round(Math.abs(off) / 60)} minutes` : `${Math.abs(off)} s`;
  return `this computer's clock is ${much} ${way} the service's: set it right, then try again`;
}

/** A CheckFailed("service") for a request that got no clear answer (`status` 0: none at all)
 * or a refusal; `status` and `problem` (the RFC 9457 answer, if any) are kept on it. */
function refused(status, message, problem = null) {
  const error = new CheckFailed("service", message);
  error.status = status;
  error.problem = problem;
  return error;
}

async function askService(key, method, path, body = null) {
  const headers = await signRequest(key, method, location.host, path, body);
  if (body !== null) headers["Content-Type"] = EVENT_MEDIA_TYPE;
  let response;
  let answer;
  try {
    response = await fetch(path, {
      method,
      headers,
      body,
      cache: "no-store",
      signal: AbortSignal.timeout(ANSWER_TIMEOUT_MS),
    });
    answer = await response.json();
  } catch (error) {
    if (response === undefined || error.name === "TimeoutError") {
      const why = error.name === "TimeoutError" ? `within ${ANSWER_TIMEOUT_MS / 1000} s` : `(${error.message})`;
      throw refused(0, `the service did not answer ${why}`);
    }
    throw refused(response.status, `the service answered ${response.status} without JSON`);
  }
  if (!response.ok) {
    const detail = answer && typeof answer === "object" ? answer.detail || answer.title : "";
    const said = HINTS[response.status];
    const late = response.status === 401 && answer?.field === "signature-input.created";
    if (response.status === 409 && said) {
      // what to do first; the service's detail (two 64-digit hashes) after it
      throw refused(response.status, `the service refused (409): ${said} (${detail})`, answer);
    }
    const hint = late ? ` (${clockHint(response)})` : said ? ` (${said})` : "";
    throw refused(response.status, `the service refused (${response.status}): ${detail}${hint}`, answer);
  }
  return answer;
}

/** Ask this service for a document (GET /v1/documents/{id}: its title state, content included). */
export async function fetchDocument(key, docId) {
  checkDocumentId(docId);
  return askService(key, "GET", `/v1/documents/${docId}`);
}

/** Ask this service for a document's title, signed with `key`; the parsed answer, or a
 * CheckFailed("service") carrying the service's problem detail. */
export async function fetchTitle(key, docId) {
  checkDocumentId(docId);
  return askService(key, "GET", `/v1/documents/${docId}/title`);
}

function checkDocumentId(docId) {
  if (!DOCUMENT_ID.test(docId)) {
    fail("document", `document id: 3 to 64 characters A-Z, 0-9 and -, first a letter or digit; got ${show(docId)}`);
  }
}

// --- events: built, shown, signed and submitted here (docs/formats/events.md) --------

const EVENT_MEDIA_TYPE = "application/vnd.encd.event";
const DOCUMENT_ID = /^[A-Z0-9][A-Z0-9-]{2,63}$/; // events.md §2
export const PARTY_ID_PATTERN = /^[A-Z0-9]{18}(?:[A-Z0-9]{2})?$/; // a USCC or an LEI

/** RFC 8785 canonical JSON of the values events hold: objects, arrays, strings, booleans,
 * null and integers of at most 2^53-1 (events.md §2).  Members sorted by their names' UTF-16
 * code units (what Array.prototype.sort compares); strings and integers as JSON.stringify
 * writes them, which is what RFC 8785 specifies. */
export function canonicalJson(value) {
  if (value === null || typeof value === "boolean") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) fail("event", `${value}: events hold only integers up to 2^53-1`);
    return JSON.stringify(value);
  }
  if (typeof value === "string") {
    if (!value.isWellFormed()) fail("event", "a text holds a lone surrogate");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object") {
    const names = Object.keys(value).sort();
    return `{${names.map((n) => `${canonicalJson(n)}:${canonicalJson(value[n])}`).join(",")}}`;
  }
  fail("event", `${typeof value} is not a JSON value`);
}

/** The text of a document event that follows the head `seq`/`prev` (events.md §2): the
 * canonical envelope line and its newline.  `time` defaults to now, to the second. */
export function eventText(docId, type, body, seq, prev, time = new Date()) {
  if (!DOCUMENT_ID.test(docId)) fail("event", `document id: expected ${DOCUMENT_ID.source}, got ${show(docId)}`);
  if (!Number.isSafeInteger(seq) || seq < 0) fail("event", `the head's seq: expected a whole number, got ${show(seq)}`);
  if (typeof prev !== "string" || !EVENT_ID.test(prev)) fail("event", `the head: expected an event id, got ${show(prev)}`);
  return (
    canonicalJson({
      v: 1,
      type,
      doc: docId,
      seq: seq + 1,
      prev,
      time: time.toISOString().replace(/\.\d+Z$/, "Z"),
      body,
    }) + "\n"
  );
}

/** The stored bytes of an event whose text `text` is signed by `key` alone (events.md §1). */
export async function signEvent(key, text) {
  const message = encoder.encode(text);
  const signature = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key.privateKey, message));
  const line = `\u2014 ${key.party} ${toBase64(concat(key.hash, signature))}\n`;
  return encoder.encode(`${text}\n${line}`);
}

/** Submit the signed event `raw`: to POST /v1/events (the receipt), or, for an event that
 * needs others' signatures too, to POST /v1/proposals (the proposal). */
export async function submitEvent(key, raw, proposal = false) {
  return askService(key, "POST", proposal ? "/v1/proposals" : "/v1/events", raw);
}

/** The names the parties `ids` registered under (GET /v1/parties/{id}), as a Map from id
 * to name: the service's word, for reading; an id it cannot name is left out. */
export async function partyNames(key, ids) {
  const names = new Map();
  for (const id of new Set(ids)) {
    if (typeof id !== "string" || !PARTY_ID_PATTERN.test(id)) continue;
    try {
      const party = await askService(key, "GET", `/v1/parties/${id}`);
      if (typeof party?.name === "string") names.set(id, party.name);
    } catch {
      // a name is a convenience: the id is shown without it
    }
  }
  return names;
}

/** The open proposals the caller has signed or must sign (GET /v1/proposals), every page. */
export async function listProposals(key) {
  const proposals = [];
  let after = null;
  do {
    const path = after === null ? "/v1/proposals" : `/v1/proposals?after=${after}`;
    const answer = await askService(key, "GET", path);
    if (!answer || !Array.isArray(answer.proposals)) fail("service", "the proposals answer holds no list");
    proposals.push(...answer.proposals);
    after = answer.next ?? null;
    if (after !== null && !/^[0-9a-f]{64}$/.test(after)) fail("service", `next: expected a proposal id, got ${show(after)}`);
  } while (after !== null);
  return proposals;
}

/** Post the caller's signature of proposal `id` (`raw`: its text signed by the caller). */
export async function countersign(key, id, raw) {
  if (!/^[0-9a-f]{64}$/.test(id)) fail("event", `proposal id: expected 64 hex digits, got ${show(id)}`);
  return askService(key, "POST", `/v1/proposals/${id}/signatures`, raw);
}

/** A document's events as stored (GET /v1/documents/{id}/events): [{index, sequenced_at, event}]. */
export async function fetchHistory(key, docId) {
  checkDocumentId(docId);
  const answer = await askService(key, "GET", `/v1/documents/${docId}/events`);
  if (!answer || !Array.isArray(answer.events)) fail("service", "the history answer holds no list");
  return answer.events;
}

/** The envelope of an event text someone else wrote (a proposal's), once it is one line of
 * canonical JSON (events.md §2) for a document: what is shown is then exactly what is signed. */
export function parseEnvelope(text) {
  const step = "event";
  if (typeof text !== "string" || !text.endsWith("\n") || text.indexOf("\n") !== text.length - 1) {
    fail(step, "an event's text is one line ending in a newline");
  }
  let envelope;
  try {
    envelope = JSON.parse(text.slice(0, -1));
  } catch (error) {
    fail(step, `the text is not JSON: ${error.message}`);
  }
  if (envelope === null || typeof envelope !== "object" || Array.isArray(envelope)) {
    fail(step, "the text is not a JSON object");
  }
  if (canonicalJson(envelope) + "\n" !== text) fail(step, "the text is not in RFC 8785 canonical form");
  if (envelope.v !== 1) fail(step, `envelope version ${show(envelope.v)}, this page knows 1`);
  if (typeof envelope.doc !== "string" || !DOCUMENT_ID.test(envelope.doc)) fail(step, "not a document's event");
  if (typeof envelope.type !== "string") fail(step, "type: expected a string");
  if (envelope.body === null || typeof envelope.body !== "object" || Array.isArray(envelope.body)) {
    fail(step, "body: expected an object");
  }
  return envelope;
}

/** Check the receipt the service gave for `raw`: it names `raw`'s event id, comes after
 * the head it follows (entry `after`), and its tlog-proof leads from that event's log entry
 * to a checkpoint the trusted key signed (log.md §4).  Returns that checkpoint. */
export async function verifyReceipt(receipt, raw, logKey, after = -1) {
  const step = "receipt";
  if (receipt === null || typeof receipt !== "object" || Array.isArray(receipt)) {
    fail(step, "a receipt is a JSON object");
  }
  const eventId = hex(await sha256(raw));
  if (receipt.event_id !== eventId) {
    fail(step, `the receipt is for event ${show(receipt.event_id)}, not the one signed here (${eventId})`);
  }
  for (const name of ["log_index", "sequenced_at"]) {
    if (!Number.isSafeInteger(receipt[name]) || receipt[name] < 0) {
      fail(step, `${name}: expected a whole number 0 or more, got ${show(receipt[name])}`);
    }
  }
  if (receipt.log_index <= after) {
    fail(step, `log index ${receipt.log_index}: the event follows its head, entry ${after}, in the log`);
  }
  if (typeof receipt.tlog_proof !== "string") fail(step, "tlog_proof: expected a string");
  const proof = parseTlogProof(receipt.tlog_proof);
  if (proof.index !== BigInt(receipt.log_index)) {
    fail("proof", `the proof is for log index ${proof.index}, not the receipt's ${receipt.log_index}`);
  }
  const checkpoint = await openCheckpoint(proof.checkpoint, logKey);
  const leaf = await leafHash(eventId, receipt.sequenced_at);
  await verifyInclusion(leaf, proof.index, checkpoint.size, proof.proof, checkpoint.root);
  return checkpoint;
}

/** Check an event that others' signatures completed (a proposal that applied): among
 * `events` (the document's history) the one the receipt names must be the text `text` with
 * its signatures, at the receipt's index and time, after the head `prev` it follows; then
 * the receipt is checked as verifyReceipt does.  Returns the event's stored bytes and the
 * checkpoint. */
export async function checkApplied(events, receipt, text, prev, logKey) {
  const step = "receipt";
  const eventId = receipt?.event_id;
  let found = null;
  let after = -1;
  for (const entry of events) {
    if (typeof entry?.event !== "string") continue;
    const id = hex(await sha256(encoder.encode(entry.event)));
    if (id === prev) after = entry.index;
    if (id === eventId) found = entry;
  }
  if (found === null) fail(step, `the document's events hold no event ${show(eventId)}`);
  if (!found.event.startsWith(text + "\n\u2014 ")) fail(step, `event ${eventId} is not the text you signed`);
  if (found.index !== receipt.log_index || found.sequenced_at !== receipt.sequenced_at) {
    fail(step, `event ${eventId} is entry ${found.index} in the document's events, entry ${receipt.log_index} in its receipt`);
  }
  if (prev !== null && after < 0) fail(step, `the document's events hold no head ${show(prev)} before it`);
  const raw = encoder.encode(found.event);
  return { raw, checkpoint: await verifyReceipt(receipt, raw, logKey, after) };
}
