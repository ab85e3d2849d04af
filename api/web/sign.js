// The "Sign an event" page (/sign): a holder endorses, an endorsee rejects, a pledgee
// releases.  The page reads the document's proved head, builds the event, shows its exact
// text, and only then signs it with the caller's key, submits it and checks its receipt.
import { CheckFailed, eventText, fetchTitle, signEvent, submitEvent, toBase64, verifyReceipt, verifyTitle } from "./encd.js";
import { $, busy, callerKey, element, ready, show, table, titleTable, trustedKey } from "./page.js";

const prepared = { text: null, key: null, logKey: null };

/** The event's type and body, from the form (events.md §5.1). */
function eventBody() {
  const type = $("action").value;
  const reason = $("reason").value.trim();
  if (type === "transfer") {
    const to = $("to").value.trim();
    if (!to) throw new CheckFailed("event", "to: name the party you endorse to");
    return { type, body: $("blank").checked ? { to, blank: true } : { to } };
  }
  if (type === "reject_transfer" || type === "release") {
    return { type, body: reason ? { reason } : {} };
  }
  throw new CheckFailed("event", `action: ${type} is not one this page signs`);
}

function forget() {
  prepared.text = prepared.key = prepared.logKey = null;
  $("prepared").hidden = true;
  $("event-text").textContent = "";
}

function showFields() {
  const type = $("action").value;
  $("to-fields").hidden = type !== "transfer";
  $("reason-fields").hidden = type === "transfer";
}

$("action").addEventListener("change", () => {
  showFields();
  forget();
});
showFields();

$("prepare").addEventListener("submit", (event) => {
  event.preventDefault();
  forget();
  busy(async () => {
    const logKey = await trustedKey();
    const key = await callerKey();
    const docId = $("document").value.trim();
    const { type, body } = eventBody();
    const answer = await fetchTitle(key, docId);
    await verifyTitle(answer, logKey, docId); // the head the event will name is in the log
    const text = eventText(docId, type, body, answer.seq, answer.head);
    Object.assign(prepared, { text, key, logKey });
    $("event-text").textContent = text;
    $("prepared").hidden = false;
    show(
      "checked",
      "Prepared: not signed yet",
      element(
        "p",
        { id: "verdict" },
        `The document's head event, entry ${answer.head_index} of the log, is proved; the event ` +
          "below names it. Read the event, then sign and submit it.",
      ),
      element("h3", {}, "The title now, as the service states it"),
      titleTable(answer),
    );
  }, "Not prepared");
});

$("submit").addEventListener("click", () => {
  const { text, key, logKey } = prepared;
  if (!text) return;
  busy(async () => {
    const raw = await signEvent(key, text);
    forget(); // signed once: a second click must not submit it again
    const receipt = await submitEvent(key, raw);
    const checkpoint = await verifyReceipt(receipt, raw, logKey);
    const sequenced = new Date(receipt.sequenced_at);
    show(
      "checked",
      receipt.duplicate ? "Already logged" : "Logged",
      element(
        "p",
        { id: "verdict" },
        `The event is entry ${receipt.log_index} of the log ${checkpoint.origin}, proved under its ` +
          `signed checkpoint of ${checkpoint.size} entries.`,
      ),
      table("receipt", [
        ["Event id", receipt.event_id],
        ["Log index", receipt.log_index],
        ["Sequenced at", isNaN(sequenced) ? receipt.sequenced_at : sequenced.toISOString()],
        ["Checkpoint", `${checkpoint.origin}, ${checkpoint.size} entries, root ${toBase64(checkpoint.root)}`],
      ]),
      element("h3", {}, "Keep these two: together they prove the event offline"),
      element("p", { class: "hint" }, "The event, as signed and stored (its id is the SHA-256 of these bytes):"),
      element("pre", { id: "signed-event" }, new TextDecoder().decode(raw)),
      element("p", { class: "hint" }, "Its receipt, a C2SP tlog-proof (docs/formats/log.md §4):"),
      element("pre", { id: "receipt-text" }, receipt.tlog_proof),
    );
  }, "Not logged");
});

ready();
