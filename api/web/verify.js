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

function table(id, rows) {
  const node = element("table", { id });
  for (const [name, value] of rows) {
    node.append(element("tr", {}, element("th", { scope: "row" }, name), element("td", {}, text(value))));
  }
  return node;
}

/** The outcome of a check that passed.  `asked`: the answer came from this service just
 * now, for the document asked about; otherwise it was pasted, and says what its writer chose. */
function showTitle(answer, checkpoint, asked) {
  result.replaceChildren();
  result.hidden = false;
  result.className = "checked";
  result.dataset.step = "";
  result.dataset.source = asked ? "service" : "pasted";
  const sequenced = new Date(answer.head_sequenced_at);
  const proved = table("proved", [
    ["Head event", answer.head],
    ["Log index", answer.head_index],
    ["Sequenced at", isNaN(sequenced) ? answer.head_sequenced_at : sequenced.toISOString()],
    ["Checkpoint", `${checkpoint.origin}, ${checkpoint.size} entries, root ${toBase64(checkpoint.root)}`],
  ]);
  const stated = table("title", [
    ["Document", answer.document],
    ["Status", answer.status],
    ["Holder (has title)", answer.holder],
    ["Controller", answer.controller],
    ["Pledge", describePledge(answer.pledge)],
    ["Content version", answer.content_version],
    ["Last location", describeLocation(answer.location)],
    ["Events", typeof answer.seq === "number" ? answer.seq + 1 : answer.seq],
  ]);
  const hint = asked
    ? [
        "The proof binds the head event, not these fields: the service derived them from the " +
          "document's events. A party to the document has them replayed from its bundle by ",
        element("code", {}, "encd title"),
        ", an auditor by ",
        element("code", {}, "encd audit"),
        ".",
      ]
    : [
        "Not proved: the proof binds the head event only, and whoever wrote this answer chose " +
          "these fields. Ask the service above, or have them replayed from the document's " +
          "bundle by ",
        element("code", {}, "encd title"),
        " or ",
        element("code", {}, "encd audit"),
        ".",
      ];
  result.append(
    element("h2", {}, "Checked: the head event is in the log"),
    element(
      "p",
      { id: "verdict" },
      `The head event is entry ${answer.head_index} of the log ${checkpoint.origin}, ` +
        `proved under its signed checkpoint of ${checkpoint.size} entries.`,
    ),
    proved,
    element("h3", {}, asked ? "The title, as the service states it" : "The title, as the answer states it"),
    stated,
    element("p", { class: "hint" }, ...hint),
    element(
      "p",
      { class: "hint" },
      "The answer is as of its checkpoint: a proof cannot show that a later event was withheld; " +
        "witnesses' cosignatures can.",
    ),
  );
}

async function trustedKey() {
  return parseVerifierKey($("log-key").value);
}

const buttons = () => document.querySelectorAll("main button");

/** Run one check at a time: every button waits while one runs. */
async function busy(work) {
  const missing = unsupported();
  if (missing) {
    showFailure(new CheckFailed("browser", missing));
    return;
  }
  for (const button of buttons()) button.disabled = true;
  result.hidden = true; // no earlier outcome stays on show while this one is worked out
  result.replaceChildren();
  result.setAttribute("aria-busy", "true");
  try {
    await work();
  } catch (error) {
    showFailure(error);
  } finally {
    for (const button of buttons()) button.disabled = false;
    result.removeAttribute("aria-busy");
  }
}

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  busy(async () => {
    const logKey = await trustedKey();
    const file = $("key-file").files[0];
    if (!file) throw new CheckFailed("key file", "choose your key file");
    const key = await loadSigningKey(await file.text(), $("party").value.trim(), $("passphrase").value);
    const docId = $("document").value.trim();
    const answer = await fetchTitle(key, docId);
    showTitle(answer, await verifyTitle(answer, logKey, docId), true);
  });
});

$("paste").addEventListener("submit", (event) => {
  event.preventDefault();
  busy(async () => {
    const logKey = await trustedKey();
    let answer;
    try {
      answer = JSON.parse($("answer").value);
    } catch (error) {
      throw new CheckFailed("answer", `not JSON: ${error.message}`);
    }
    showTitle(answer, await verifyTitle(answer, logKey, $("pasted-document").value.trim()), false);
  });
});

if (unsupported()) showFailure(new CheckFailed("browser", unsupported()));
document.body.dataset.ready = "true";
