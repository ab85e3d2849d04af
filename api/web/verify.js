// The "Check a title" page (/verify): wires its forms to encd.js and shows the outcome.
import {
  CheckFailed,
  fetchTitle,
  loadSigningKey,
  parseVerifierKey,
  toBase64,
  unsupported,
  verifyTitle,
} from "./encd.js";

const $ = (id) => document.getElementById(id);
const result = $("result");

// The steps as docs/web.md numbers them, for the outcome's wording.
const STEPS = {
  browser: "this browser",
  key: "the log key you trust",
  "key file": "your key file",
  service: "the service's answer",
  answer: "the answer's form",
  proof: "the receipt",
  checkpoint: "the checkpoint's signature",
  inclusion: "the inclusion proof",
};

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function showFailure(error) {
  result.replaceChildren();
  result.hidden = false;
  result.className = "failed";
  if (error instanceof CheckFailed) {
    result.dataset.step = error.step;
    result.append(
      element("h2", {}, "Not checked"),
      element("p", { id: "verdict" }, `${STEPS[error.step] ?? error.step}: ${error.message}`),
    );
  } else {
    result.dataset.step = "page";
    result.append(
      element("h2", {}, "Not checked"),
      element("p", { id: "verdict" }, `this page could not finish: ${error.message ?? error}`),
    );
  }
}

function text(value) {
  if (value === null || value === undefined) return "none";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function describePledge(pledge) {
  if (!pledge || typeof pledge !== "object") return "not pledged";
  const parts = [`to ${text(pledge.pledgee)}`];
  if (pledge.amount !== undefined) parts.push(`${text(pledge.amount)} ${text(pledge.currency ?? "")}`.trim());
  if (pledge.loan_ref !== undefined) parts.push(`loan ${text(pledge.loan_ref)}`);
  if (pledge.registry_ref !== undefined) parts.push(`registry ${text(pledge.registry_ref)}`);
  if (pledge.maturity !== undefined) parts.push(`maturity ${text(pledge.maturity)}`);
  return parts.join(", ");
}

function describeLocation(location) {
  if (!location || typeof location !== "object") return "none recorded";
  const where = [location.name, location.locode].filter((x) => x !== undefined).map(text).join(" ");
  return [location.kind, where, location.at].filter((x) => x !== undefined && x !== "").map(text).join(", ");
}

function showTitle(answer, checkpoint) {
  result.replaceChildren();
  result.hidden = false;
  result.className = "checked";
  result.dataset.step = "";
  const rows = [
    ["Document", answer.document],
    ["Status", answer.status],
    ["Holder (has title)", answer.holder],
    ["Controller", answer.controller],
    ["Pledge", describePledge(answer.pledge)],
    ["Content version", answer.content_version],
    ["Last location", describeLocation(answer.location)],
    ["Events", typeof answer.seq === "number" ? answer.seq + 1 : answer.seq],
    ["Head event", answer.head],
    ["Head's log index", answer.head_index],
  ];
  const table = element("table", { id: "title" });
  for (const [name, value] of rows) {
    table.append(element("tr", {}, element("th", { scope: "row" }, name), element("td", {}, text(value))));
  }
  result.append(
    element("h2", {}, "Checked"),
    element(
      "p",
      { id: "verdict" },
      `The head event is entry ${answer.head_index} of the log ${checkpoint.origin}, ` +
        `proved under its signed checkpoint of ${checkpoint.size} entries ` +
        `(root ${toBase64(checkpoint.root)}).`,
    ),
    table,
    element(
      "p",
      { class: "hint" },
      "The proof binds the head event: the service cannot name an event the log did not commit to. " +
        "The other fields are as the service derived them from the document's events; a party to " +
        "the document has them replayed by ",
      element("code", {}, "encd title"),
      ", an auditor by ",
      element("code", {}, "encd audit"),
      " of its bundle. The answer is as of this checkpoint: witnesses' cosignatures show that " +
        "no later one is withheld.",
    ),
  );
}

async function trustedKey() {
  return parseVerifierKey($("log-key").value);
}

async function busy(button, work) {
  const missing = unsupported();
  if (missing) {
    showFailure(new CheckFailed("browser", missing));
    return;
  }
  button.disabled = true;
  result.hidden = true; // no earlier outcome stays on show while this one is worked out
  result.replaceChildren();
  result.setAttribute("aria-busy", "true");
  try {
    await work();
  } catch (error) {
    showFailure(error);
  } finally {
    button.disabled = false;
    result.removeAttribute("aria-busy");
  }
}

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const button = event.submitter ?? $("ask").querySelector("button");
  busy(button, async () => {
    const logKey = await trustedKey();
    const file = $("key-file").files[0];
    if (!file) throw new CheckFailed("key file", "choose your key file");
    const key = await loadSigningKey(await file.text(), $("party").value.trim(), $("passphrase").value);
    const docId = $("document").value.trim();
    const answer = await fetchTitle(key, docId);
    showTitle(answer, await verifyTitle(answer, logKey, docId));
  });
});

$("paste").addEventListener("submit", (event) => {
  event.preventDefault();
  const button = event.submitter ?? $("paste").querySelector("button");
  busy(button, async () => {
    const logKey = await trustedKey();
    let answer;
    try {
      answer = JSON.parse($("answer").value);
    } catch (error) {
      throw new CheckFailed("answer", `not JSON: ${error.message}`);
    }
    showTitle(answer, await verifyTitle(answer, logKey));
  });
});

if (unsupported()) showFailure(new CheckFailed("browser", unsupported()));
document.body.dataset.ready = "true";
