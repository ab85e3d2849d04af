// The "Sign an event" page (/sign): a holder endorses or surrenders, an endorsee rejects,
// a pledgee releases or enforces, a holder proposes a pledge and a bank countersigns it.  The page reads the document's proved head, builds the event, shows its exact
// text, and only then signs it with the caller's key, submits it and checks its receipt.
// Once signed, the event is kept until the service has either logged it or refused it:
// an answer lost on the way can be asked for again with the very same event.
import {
  CheckFailed,
  PARTY_ID_PATTERN,
  canonicalJson,
  checkApplied,
  countersign,
  eventText,
  fetchDocument,
  fetchHistory,
  fetchTitle,
  hex,
  listProposals,
  parseEnvelope,
  partyNames,
  sha256,
  signEvent,
  submitEvent,
  verifyReceipt,
  verifyTitle,
} from "./encd.js";
import {
  $,
  busy,
  callerKey,
  checkpointLine,
  element,
  named,
  partiesOf,
  ready,
  result,
  show,
  showFailure,
  table,
  titleTable,
  trustedKey,
  when,
} from "./page.js";

// What "Sign and submit" acts on: set by Prepare, dropped by any change to the form.
const prepared = { text: null, key: null, logKey: null, headIndex: -1, raw: null, proposal: false };
let generation = 0; // a Prepare still running when the form changes shows nothing

// The events whose body is an optional reason (events.md §5.1)
const REASONED = new Set(["reject_transfer", "release", "enforce", "surrender"]);

/** The event's type and body, from the form (events.md §5.1). */
// The service's rules for the text an event's body holds (encd/document.py, plain_text and
// plain_lines; encd/title.py): no C0 or C1 control character, DEL, line or paragraph
// separator, bidirectional control or lone surrogate (a reason may hold line feeds), and
// at most so many characters.  Checked here so that what is signed is what the service takes.
const BIDI_CONTROLS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069";
const NOT_TEXT = new RegExp(`[\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029${BIDI_CONTROLS}]`);
const NOT_LINES = new RegExp(`[\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f\\u2028\\u2029${BIDI_CONTROLS}]`);
const AMOUNT = /^(0|[1-9][0-9]{0,15})(\.[0-9]{1,4})?$/;

function checkText(name, value, most, lines = false) {
  const found = (lines ? NOT_LINES : NOT_TEXT).exec(value);
  if (found) {
    const code = found[0].codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
    throw new CheckFailed("event", `${name}: expected text without control characters, got U+${code} at position ${[...value.slice(0, found.index)].length}`);
  }
  if (!value.isWellFormed()) throw new CheckFailed("event", `${name}: holds a lone surrogate`);
  const length = [...value].length;
  if (length > most) throw new CheckFailed("event", `${name}: expected at most ${most} characters, got ${length}`);
}

function eventBody() {
  const type = $("action").value;
  const reason = $("reason").value.trim();
  if (type === "transfer") {
    const to = $("to").value.trim();
    if (!PARTY_ID_PATTERN.test(to)) {
      throw new CheckFailed("event", "endorsee: expected a party id (an 18-character USCC or a 20-character LEI)");
    }
    return { type, body: $("blank").checked ? { to, blank: true } : { to } };
  }
  if (REASONED.has(type)) {
    if (reason) checkText("reason", reason, 2000, true);
    return { type, body: reason ? { reason } : {} };
  }
  if (type === "pledge") {
    const fields = [
      ["pledgee", "pledgee", "the bank's party id"],
      ["loan_ref", "loan-ref", "the loan reference"],
      ["amount", "amount", "the amount"],
      ["currency", "currency", "the currency"],
      ["registry_ref", "registry-ref", "the registry reference"],
      ["maturity", "maturity", "the maturity date"],
    ];
    const body = {};
    for (const [name, id, what] of fields) {
      body[name] = $(id).value.trim();
      if (!body[name]) throw new CheckFailed("event", `${name}: give ${what}`);
    }
    if (!PARTY_ID_PATTERN.test(body.pledgee)) {
      throw new CheckFailed("event", "pledgee: expected a party id (an 18-character USCC or a 20-character LEI)");
    }
    checkText("loan_ref", body.loan_ref, 64);
    checkText("registry_ref", body.registry_ref, 64);
    if (!AMOUNT.test(body.amount) || !/[1-9]/.test(body.amount)) {
      throw new CheckFailed("event", `amount: expected a decimal amount greater than 0 (up to 16 digits, then at most 4 after a point, e.g. 120000.00), got ${body.amount}`);
    }
    // as encd pledge: a real date, today or later (UTC), for a loan not yet due
    const today = new Date().toISOString().slice(0, 10);
    if (!/^\d{4}-\d{2}-\d{2}$/.test(body.maturity) || Number.isNaN(Date.parse(body.maturity))) {
      throw new CheckFailed("event", `maturity: expected a date YYYY-MM-DD, got ${body.maturity}`);
    }
    if (body.maturity < today) {
      throw new CheckFailed("event", `maturity: ${body.maturity} is past: a pledge is for a loan not yet due`);
    }
    return { type, body };
  }
  throw new CheckFailed("event", `action: ${type} is not one this page signs`);
}

/** Drop the prepared event (never one that was signed and may be in the log: see below). */
function forget() {
  if (prepared.raw) return;
  generation += 1;
  Object.assign(prepared, { text: null, key: null, logKey: null, headIndex: -1, proposal: false });
  $("prepared").hidden = true;
  $("event-text").textContent = "";
  if (!result.hasAttribute("aria-busy")) {
    result.hidden = true;
    result.replaceChildren();
  }
}

function showFields() {
  const type = $("action").value;
  $("to-fields").hidden = type !== "transfer";
  $("reason-fields").hidden = !REASONED.has(type);
  $("pledge-fields").hidden = type !== "pledge";
}

for (const form of [$("prepare"), $("trust"), $("who")]) {
  form.addEventListener("input", forget);
  form.addEventListener("change", forget);
}
$("action").addEventListener("change", showFields);
showFields();

$("prepare").addEventListener("submit", (event) => {
  event.preventDefault();
  if (prepared.raw) {
    showFailure(new CheckFailed("event", "the event signed above waits for its outcome: send it again first"), "Not prepared");
    return;
  }
  forget();
  const mine = generation;
  busy(async () => {
    const logKey = await trustedKey();
    const key = await callerKey();
    const docId = $("document").value.trim();
    const { type, body } = eventBody();
    const answer = await fetchTitle(key, docId);
    await verifyTitle(answer, logKey, docId); // the head the event will name is in the log
    const text = eventText(docId, type, body, answer.seq, answer.head);
    const counterpart = body.to ?? body.pledgee; // the party the event hands the document to
    const names = await partyNames(key, [...partiesOf(answer), counterpart]);
    if (mine !== generation) throw new CheckFailed("event", "the form changed while this was prepared: prepare again");
    // a pledge needs the bank's signature too, and a surrender the pledgee's while the
    // document is pledged (as the service states it: if that is wrong, the service refuses)
    const proposal = type === "pledge" || (type === "surrender" && answer.pledge != null);
    Object.assign(prepared, { text, key, logKey, headIndex: answer.head_index, proposal });
    $("event-text").textContent = text;
    $("prepared").hidden = false;
    $("submit").textContent = "Sign and submit";
    show(
      "checked",
      "Prepared: not signed yet",
      element(
        "p",
        { id: "verdict" },
        `The document's head event, entry ${answer.head_index} of the log, is proved; the event ` +
          "below names it. Read the title and the event, then sign and submit it.",
      ),
      ...(proposal && type === "surrender"
        ? [
            element(
              "p",
              { id: "needs" },
              `The document is pledged to ${named(answer.pledge.pledgee, names)} (as the service ` +
                "states it): the surrender is proposed, and applies once the pledgee countersigns it.",
            ),
          ]
        : []),
      ...(counterpart === undefined
        ? []
        : [
            element(
              "p",
              { id: "counterpart" },
              `${body.to ? "Endorsee" : "Pledgee"}: ${named(counterpart, names)}` +
                (names.has(counterpart) ? "" : " (a party this service could not name: check the id)"),
            ),
          ]),
      element("h3", {}, "The title now, as the service states it"),
      titleTable(answer, names),
    );
  }, "Not prepared");
});

// Leaving the page while a signed event waits for its outcome would lose the only way to
// learn it (sending the very same bytes again): the browser asks the user first.
window.addEventListener("beforeunload", (event) => {
  if (prepared.raw) event.preventDefault();
});

/** The event was sent, but whether it was logged is not known: keep it, say so, offer to
 * send the very same bytes again (the service answers an event it has with its receipt). */
async function unknown(error, raw, proposal) {
  const id = hex(await sha256(raw));
  const again = proposal
    ? "Send it again: the service answers with the proposal as it stands, or, once it has " +
      "applied, with the receipt its event got."
    : "Send it again: if the service logged it, it answers with its receipt; if not, it logs it now.";
  $("submit").textContent = "Send the same event again";
  $("prepared").hidden = false;
  result.dataset.step = error.step ?? "page";
  show(
    "failed",
    "Sent, but not known to be logged",
    element("p", { id: "verdict" }, `${error.message ?? error}`),
    element(
      "p",
      {},
      `The signed event (id ${id}) is kept on this page. ${again} Nothing is signed twice.`,
    ),
    element("pre", { id: "signed-event" }, new TextDecoder().decode(raw)),
  );
}

$("submit").addEventListener("click", () => {
  const { text, key, logKey, headIndex, proposal } = prepared;
  if (!text) return;
  busy(async () => {
    const raw = prepared.raw ?? (await signEvent(key, text));
    prepared.raw = raw; // kept until the service has logged it or refused it
    let receipt;
    try {
      receipt = await submitEvent(key, raw, proposal);
    } catch (error) {
      if (error.status >= 400 && error.status < 500) {
        prepared.raw = null; // refused: nothing was logged
        forget();
        showFailure(error, "Not logged");
        return;
      }
      await unknown(error, raw, proposal); // no answer, or a server error: it may have been logged
      return;
    }
    if (proposal && receipt?.state === "open") {
      prepared.raw = null;
      forget();
      showProposed(receipt);
      return;
    }
    let logged = raw;
    let checkpoint;
    try {
      if (proposal) {
        // applied, by signatures posted before ours: the event logged carries them all
        const { doc, prev } = JSON.parse(text);
        const events = await fetchHistory(key, doc);
        ({ raw: logged, checkpoint } = await checkApplied(events, receipt?.receipt, text, prev, logKey));
        receipt = receipt.receipt;
      } else {
        checkpoint = await verifyReceipt(receipt, raw, logKey, headIndex);
      }
    } catch (error) {
      await unknown(error, raw, proposal); // the service said logged, but that is not shown
      return;
    }
    prepared.raw = null;
    forget();
    showLogged(receipt, logged, checkpoint);
  }, "Not logged");
});

/** A proposal waiting for others' signatures. */
function showProposed(view) {
  show(
    "checked",
    "Proposed: waiting for signatures",
    element(
      "p",
      { id: "verdict" },
      `Your signature is on the proposal; it applies when ${(view.missing ?? []).join(", ") || "every party"} ` +
        "has signed it too, on this page or with encd countersign.",
    ),
    table("proposal", [
      ["Proposal", view.id],
      ["Signed by", (view.signed_by ?? []).join(", ")],
      ["Waiting for", (view.missing ?? []).join(", ")],
      ["Expires", when(view.expires_at)],
    ]),
  );
}

/** An event in the log, with what proves it. */
function showLogged(receipt, raw, checkpoint) {
  show(
    "checked",
    receipt.duplicate === true ? "Logged (the service had it already)" : "Logged",
    element(
      "p",
      { id: "verdict" },
      `The event is entry ${receipt.log_index} of the log ${checkpoint.origin}, proved under its ` +
        `signed checkpoint of ${checkpoint.size} entries.`,
    ),
    table("receipt", [
      ["Event id", receipt.event_id],
      ["Log index", receipt.log_index],
      ["Sequenced at", when(receipt.sequenced_at)],
      ["Checkpoint", checkpointLine(checkpoint)],
    ]),
    element("h3", {}, "Keep these two: together they prove the event offline"),
    element("p", { class: "hint" }, "The event, as signed and stored (its id is the SHA-256 of these bytes):"),
    element("pre", { id: "signed-event" }, new TextDecoder().decode(raw)),
    element("p", { class: "hint" }, "Its receipt, a C2SP tlog-proof (docs/formats/log.md §4):"),
    element("pre", { id: "receipt-text" }, receipt.tlog_proof),
  );
}

// --- countersigning ------------------------------------------------------------------

const LABELS = new Map([
  ["pledgee", "Pledgee"],
  ["loan_ref", "Loan reference"],
  ["amount", "Amount"],
  ["currency", "Currency"],
  ["registry_ref", "Registry reference"],
  ["maturity", "Maturity"],
]);

let listing = 0; // a list made with other keys than the form's now is dropped

function dropList() {
  listing += 1;
  $("proposals").replaceChildren();
}

for (const part of [$("trust"), $("who")]) {
  part.addEventListener("input", dropList);
  part.addEventListener("change", dropList);
}

/** One proposal waiting for the caller, checked: its id is the SHA-256 of its text, the
 * text is a canonical document event (so the fields shown are what is signed), and it
 * follows the document's head, proved in the log.  What the service says of it (who signed,
 * who it waits for, the title now) is shown as the service's word. */
async function proposalCard(view, key, logKey) {
  const card = element("article", { class: "proposal", "data-proposal": String(view.id) });
  let envelope;
  let answer;
  try {
    envelope = parseEnvelope(view.text);
    if (hex(await sha256(new TextEncoder().encode(view.text))) !== view.id) {
      throw new CheckFailed("event", "its id is not the SHA-256 of its text");
    }
    answer = await fetchTitle(key, envelope.doc);
    await verifyTitle(answer, logKey, envelope.doc);
    if (envelope.seq !== answer.seq + 1 || envelope.prev !== answer.head) {
      throw new CheckFailed("event", "it does not follow the document's head (the document has moved on)");
    }
  } catch (error) {
    card.append(element("p", { class: "refused" }, `Proposal ${String(view.id)} cannot be signed here: ${error.message}`));
    return card;
  }
  const rows = [
    ["Document", envelope.doc],
    ["Event", envelope.type],
    ...Object.entries(envelope.body).map(([name, value]) => [LABELS.get(name) ?? name, value]),
    ["Follows", `the document's head, entry ${answer.head_index} of the log (proved)`],
  ];
  if (envelope.type === "amend" && envelope.body?.content && typeof envelope.body.content === "object") {
    rows.splice(2, Object.keys(envelope.body).length, ...(await amendmentRows(key, envelope)));
  }
  const said = [
    ["Holder now", answer.holder],
    ["Pledge now", answer.pledge ? `to ${answer.pledge.pledgee}` : "not pledged"],
    ["Signed by", (view.signed_by ?? []).join(", ")],
    ["Waiting for", (view.missing ?? []).join(", ")],
    ["Expires", when(view.expires_at)],
  ];
  const button = element("button", { type: "button" }, "Countersign");
  const state = { raw: null };
  button.addEventListener("click", () => countersignOne(card, button, state, view, envelope, key, logKey));
  card.append(
    element("h3", {}, `${envelope.type} of ${envelope.doc}`),
    table(`proposal-${String(view.id).slice(0, 16)}`, rows),
    element("p", { class: "hint" }, "As the service states it:"),
    table(`said-${String(view.id).slice(0, 16)}`, said),
    element("p", { class: "hint" }, "Its text, exactly as your key will sign it:"),
    element("pre", {}, view.text),
    button,
  );
  return card;
}

/** An amendment's card rows: what it changes, field by field, against the content the
 * service holds now, once that content is the one the amendment supersedes (its SHA-256,
 * events.md); otherwise the new content whole, its changes not known. */
async function amendmentRows(key, envelope) {
  const next = withoutNulls(envelope.body.content); // as the service holds content (title.md §1)
  const whole = [
    ["New content", envelope.body.content],
    ["Supersedes", envelope.body.supersedes],
  ];
  let now;
  try {
    now = (await fetchDocument(key, envelope.doc)).title?.content;
  } catch (error) {
    return [["Changes", `not known (${error.message})`], ...whole];
  }
  const digest = now && typeof now === "object" ? hex(await sha256(new TextEncoder().encode(canonicalJson(now)))) : "";
  if (digest !== envelope.body.supersedes) {
    return [["Changes", "not known (the content the service states is not the one this amendment supersedes)"], ...whole];
  }
  const names = [...new Set([...Object.keys(now), ...Object.keys(next)])].sort();
  const changed = names.filter((n) => canonicalJson(now[n] ?? null) !== canonicalJson(next[n] ?? null));
  const rows = [["Changes", changed.length ? changed.join(", ") : "nothing (the content it holds now)"]];
  for (const n of changed) {
    rows.push([`${n}, now`, n in now ? now[n] : "(none)"], [`${n}, after`, n in next ? next[n] : "(none)"]);
  }
  rows.push(["Supersedes", envelope.body.supersedes]);
  return rows;
}

function withoutNulls(value) {
  if (Array.isArray(value)) return value.map(withoutNulls);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null).map(([k, v]) => [k, withoutNulls(v)]));
  }
  return value;
}

$("list").addEventListener("click", () => {
  forget();
  dropList();
  const mine = listing;
  busy(async () => {
    const logKey = await trustedKey();
    const key = await callerKey();
    const waiting = (await listProposals(key)).filter(
      (view) =>
        Array.isArray(view.required) &&
        Array.isArray(view.missing) &&
        view.required.some(
          (r) => Array.isArray(r.parties) && r.parties.includes(key.party) && view.missing.includes(r.who),
        ) &&
        !(view.signed_by ?? []).includes(key.party),
    );
    const cards = [];
    for (const view of waiting) cards.push(await proposalCard(view, key, logKey));
    if (mine !== listing) return; // the form changed meanwhile
    const list = $("proposals");
    if (!cards.length) list.append(element("p", { id: "no-proposals" }, "No proposal waits for your signature."));
    list.append(...cards);
  }, "Not listed");
});

function countersignOne(card, button, state, view, envelope, key, logKey) {
  busy(async () => {
    const raw = state.raw ?? (await signEvent(key, view.text));
    state.raw = raw; // kept until the service has taken it or refused it
    let answer;
    try {
      answer = await countersign(key, view.id, raw);
    } catch (error) {
      if (error.status >= 400 && error.status < 500) {
        state.raw = null;
        if (error.status === 409) card.remove(); // applied, expired or overtaken: not signable
        throw error;
      }
      button.textContent = "Send the same signature again";
      error.message +=
        " (your signature may have reached it: send the same signature again, and the service " +
        "answers with the proposal as it stands, or with its event's receipt once it applied)";
      throw error;
    }
    state.raw = null;
    card.remove();
    if (answer?.state === "open") {
      showProposed(answer);
      return;
    }
    if (answer?.state !== "applied") throw new CheckFailed("service", `the proposal is ${String(answer?.state)}`);
    // Other cards for this document follow a head it has now moved past.
    for (const other of document.querySelectorAll("#proposals article")) {
      if (other.querySelector("h3")?.textContent.endsWith(` of ${envelope.doc}`)) other.remove();
    }
    try {
      const events = await fetchHistory(key, envelope.doc);
      const { raw: logged, checkpoint } = await checkApplied(events, answer.receipt, view.text, envelope.prev, logKey);
      showLogged(answer.receipt, logged, checkpoint);
    } catch (error) {
      showFailure(error, "Applied, but not checked");
      result.append(
        element(
          "p",
          {},
          `The service says the proposal applied as event ${String(answer.event_id)}; this page could ` +
            "not check it. Read the document's title (Check a title) to see where it stands.",
        ),
      );
    }
    result.scrollIntoView();
  }, "Not countersigned");
}

ready();
