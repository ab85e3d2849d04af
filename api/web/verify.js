// The "Check a title" page (/verify): wires its forms to encd.js and shows the outcome.
import { CheckFailed, fetchTitle, partyNames, verifyTitle } from "./encd.js";
import {
  $,
  busy,
  callerKey,
  checkpointLine,
  element,
  partiesOf,
  ready,
  result,
  show,
  table,
  titleTable,
  trustedKey,
  when,
} from "./page.js";

/** The outcome of a check that passed.  `asked`: the answer came from this service just
 * now, for the document asked about; otherwise it was pasted, and says what its writer chose. */
function showTitle(answer, checkpoint, asked, names = null) {
  result.dataset.source = asked ? "service" : "pasted";
  const proved = table("proved", [
    ["Head event", answer.head],
    ["Log index", answer.head_index],
    ["Sequenced at", when(answer.head_sequenced_at)],
    ["Checkpoint", checkpointLine(checkpoint)],
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
  show(
    "checked",
    "Checked: the head event is in the log",
    element(
      "p",
      { id: "verdict" },
      `The head event is entry ${answer.head_index} of the log ${checkpoint.origin}, ` +
        `proved under its signed checkpoint of ${checkpoint.size} entries.`,
    ),
    proved,
    element("h3", {}, asked ? "The title, as the service states it" : "The title, as the answer states it"),
    titleTable(answer, names),
    element("p", { class: "hint" }, ...hint),
    element(
      "p",
      { class: "hint" },
      "The answer is as of its checkpoint: a proof cannot show that a later event was withheld; " +
        "witnesses' cosignatures can.",
    ),
  );
}

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  busy(async () => {
    const logKey = await trustedKey();
    const key = await callerKey();
    const docId = $("document").value.trim();
    const answer = await fetchTitle(key, docId);
    const checkpoint = await verifyTitle(answer, logKey, docId);
    showTitle(answer, checkpoint, true, await partyNames(key, partiesOf(answer)));
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

ready();
