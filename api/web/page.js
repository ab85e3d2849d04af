// What the pages share: building elements, showing an outcome, running one check at a time,
// and the caller's key.  Nothing here checks anything: encd.js does.
import { CheckFailed, loadSigningKey, parseVerifierKey, toBase64, unsupported } from "./encd.js";

export const $ = (id) => document.getElementById(id);
export const result = $("result");

// The steps as docs/web.md names them, for the outcome's wording.
const STEPS = {
  browser: "this browser",
  key: "the log key you trust",
  "key file": "your key file",
  service: "the service's answer",
  answer: "the answer's form",
  proof: "the receipt",
  checkpoint: "the checkpoint's signature",
  inclusion: "the inclusion proof",
  event: "the event",
  receipt: "the event's receipt",
};

export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

export function text(value) {
  if (value === null || value === undefined) return "none";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export function describePledge(pledge) {
  if (!pledge || typeof pledge !== "object") return "not pledged";
  const parts = [`to ${text(pledge.pledgee)}`];
  if (pledge.amount !== undefined) parts.push(`${text(pledge.amount)} ${text(pledge.currency ?? "")}`.trim());
  if (pledge.loan_ref !== undefined) parts.push(`loan ${text(pledge.loan_ref)}`);
  if (pledge.registry_ref !== undefined) parts.push(`registry ${text(pledge.registry_ref)}`);
  if (pledge.maturity !== undefined) parts.push(`maturity ${text(pledge.maturity)}`);
  return parts.join(", ");
}

export function describeLocation(location) {
  if (!location || typeof location !== "object") return "none recorded";
  const where = [location.name, location.locode].filter((x) => x !== undefined).map(text).join(" ");
  return [location.kind, where, location.at].filter((x) => x !== undefined && x !== "").map(text).join(", ");
}

/** A time the service gave in milliseconds since the epoch, as ISO 8601 (or as given). */
export function when(ms) {
  const date = new Date(ms);
  return isNaN(date) ? ms : date.toISOString();
}

/** A verified checkpoint in one line: origin, size, root. */
export function checkpointLine(checkpoint) {
  return `${checkpoint.origin}, ${checkpoint.size} entries, root ${toBase64(checkpoint.root)}`;
}

export function table(id, rows) {
  const node = element("table", { id });
  for (const [name, value] of rows) {
    node.append(element("tr", {}, element("th", { scope: "row" }, name), element("td", {}, text(value))));
  }
  return node;
}

/** A party's id, with the name it registered under when `names` (a Map) has it. */
export function named(id, names) {
  const name = names?.get(id);
  return name ? `${text(id)} (${name})` : id;
}

/** The parties a title answer names: holder, controller, pledgee. */
export function partiesOf(answer) {
  return [answer.holder, answer.controller, answer.pledge?.pledgee];
}

/** The title's fields, as the answer states them; `names`, the parties' registered names. */
export function titleTable(answer, names = null) {
  const pledge = answer.pledge && typeof answer.pledge === "object"
    ? { ...answer.pledge, pledgee: named(answer.pledge.pledgee, names) }
    : answer.pledge;
  return table("title", [
    ["Document", answer.document],
    ["Status", answer.status],
    ["Holder (has title)", named(answer.holder, names)],
    ["Controller", named(answer.controller, names)],
    ["Pledge", describePledge(pledge)],
    ["Content version", answer.content_version],
    ["Last location", describeLocation(answer.location)],
    ["Events", typeof answer.seq === "number" ? answer.seq + 1 : answer.seq],
  ]);
}

/** Show an outcome: `kind` "checked" or "failed", under `heading`. */
export function show(kind, heading, ...children) {
  result.replaceChildren(element("h2", {}, heading), ...children);
  result.className = kind;
  result.hidden = false;
}

export function showFailure(error, heading = "Not checked") {
  if (error instanceof CheckFailed) {
    result.dataset.step = error.step;
    show("failed", heading, element("p", { id: "verdict" }, `${STEPS[error.step] ?? error.step}: ${error.message}`));
  } else {
    result.dataset.step = "page";
    show("failed", heading, element("p", { id: "verdict" }, `this page could not finish: ${error.message ?? error}`));
  }
}

const buttons = () => document.querySelectorAll("main button");

/** Run one piece of work at a time: every button waits while one runs; a failure is shown
 * under `heading`. */
export async function busy(work, heading) {
  const missing = unsupported();
  if (missing) {
    showFailure(new CheckFailed("browser", missing), heading);
    return;
  }
  for (const button of buttons()) button.disabled = true;
  result.hidden = true; // no earlier outcome stays on show while this one is worked out
  result.replaceChildren();
  result.dataset.step = "";
  delete result.dataset.source;
  result.setAttribute("aria-busy", "true");
  try {
    await work();
  } catch (error) {
    showFailure(error, heading);
  } finally {
    for (const button of buttons()) button.disabled = false;
    result.removeAttribute("aria-busy");
  }
}

export function trustedKey() {
  return parseVerifierKey($("log-key").value);
}

/** The caller's signing key, from the page's party id, key file and passphrase fields. */
export async function callerKey() {
  const file = $("key-file").files[0];
  if (!file) throw new CheckFailed("key file", "choose your key file");
  return loadSigningKey(await file.text(), $("party").value.trim(), $("passphrase").value);
}

/** Say at once when this browser cannot run the checks; then mark the page ready. */
export function ready() {
  const missing = unsupported();
  if (missing) showFailure(new CheckFailed("browser", missing));
  document.body.dataset.ready = "true";
}
