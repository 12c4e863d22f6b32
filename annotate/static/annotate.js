// Keyboard and click handling of the annotation page. The page state that matters lives on the
// server; here we keep the row cursor and the commands typed. One request is in flight at a time
// (see annotate/ordering.py): commands typed meanwhile wait and go together with the next one, which
// the hidden "run" button's event takes through window.__annTake. Each answer says the last command
// it ran (data-ack) and its own number (data-answer).
// Commands not yet answered are also kept in sessionStorage (this tab only), with the item and version
// they were typed on: a server restart sends the page back to the log-in form, and after it the page
// sends them again if the item is still at that version, or else says how many changes were not saved
// until the annotator acknowledges it.
(() => {
  if (window.__annInstalled) return;
  window.__annInstalled = true;
  const RESEND_MS = 20000; // an answer this late is taken as lost: send the same commands again
  const SLOW_MS = 3000; // then the page says it is waiting for the server
  const SYNC_LABEL = { idle: "✓ up to date", busy: "sending…", slow: "waiting for the server…" };
  const UNSENT = "ann-unsent"; // sessionStorage: {user, key, version, commands}
  const MOVES = new Set(["show", "goto", "next", "prev", "reload", "open"]); // commands that change no document
  const S = { cursor: 0, mode: "add", editRow: null, waiting: [], sent: [], sentAt: 0, seq: 0, answer: -1, redrawn: null, key: null,
    base: null, restore: readUnsent(), restoring: false };
  window.__annTake = () => JSON.stringify(S.sent);
  window.__annState = S; // read by the browser tests (and handy in the console)

  const main = () => document.getElementById("ann-main");
  const rows = () => Array.from(document.querySelectorAll("#ann-main tr.ann-row"));
  const box = () => document.getElementById("ann-phrase");
  const typeSelect = () => document.getElementById("ann-ptype");
  const help = () => document.getElementById("ann-help");
  const visible = (el) => !!el && el.offsetParent !== null;

  function readUnsent() {
    try { return JSON.parse(sessionStorage.getItem(UNSENT) || "null"); } catch (err) { return null; }
  }

  // The commands the server has not answered yet, with the item and version they were typed on.
  function keepUnsent() {
    const commands = S.sent.concat(S.waiting).filter((c) => !MOVES.has(c.op)); // changes only, not moves
    if (S.restore) return; // an earlier page's changes wait for the annotator's answer: keep them
    if (!commands.length || !S.base) { sessionStorage.removeItem(UNSENT); return; }
    sessionStorage.setItem(UNSENT, JSON.stringify({ ...S.base, commands }));
  }

  function baseOf(m) {
    return m && m.dataset.key ? { user: m.dataset.user, key: m.dataset.key, version: Number(m.dataset.version) } : null;
  }

  function send(command) {
    const m = main();
    if (!S.sent.length && !S.waiting.length) S.base = baseOf(m);
    command.cursor = S.cursor;
    command.seq = S.seq++;
    if (m && m.dataset.key) command.key = m.dataset.key;
    S.waiting.push(command);
    flush();
  }

  // After a reload or a re-login: send an earlier page's unanswered commands again, if the item is as they found it.
  function restoreUnsent(m) {
    const r = S.restore;
    if (!S.restoring) {
      S.restoring = true;
      if (m.dataset.user === r.user) { send({ op: "goto", target: r.key }); return; }
    }
    if (m.dataset.user === r.user && m.dataset.key === r.key && Number(m.dataset.version) === r.version) {
      S.restore = null;
      S.base = baseOf(m);
      r.commands.forEach((c) => { c.seq = S.seq++; S.waiting.push(c); });
      flush();
      return;
    }
    showUnsaved(r);
  }

  function showUnsaved(r) {
    if (document.getElementById("ann-unsaved")) return;
    const div = document.createElement("div");
    div.id = "ann-unsaved";
    div.className = "ann-unsaved";
    div.setAttribute("role", "alertdialog");
    const text = document.createElement("p");
    const why = r.user === main().dataset.user ? `item ${r.key} changed since they were typed (v${r.version})` : `they were typed by ${r.user}`;
    text.textContent = `${r.commands.length} change(s) not saved: the server restarted before it answered, and ${why}. Check the item and type them again.`;
    const ok = document.createElement("button");
    ok.type = "button";
    ok.className = "ann-btn";
    ok.textContent = "I understand (Enter)";
    ok.addEventListener("click", acknowledgeUnsaved);
    div.append(text, ok);
    document.body.appendChild(div);
    ok.focus();
  }

  function acknowledgeUnsaved() {
    S.restore = null;
    sessionStorage.removeItem(UNSENT);
    const div = document.getElementById("ann-unsaved");
    if (div) div.remove();
    keepUnsent();
  }

  function post() {
    S.sentAt = Date.now();
    const run = document.getElementById("ann-run");
    if (run) run.click();
  }

  function flush() {
    if (!S.sent.length && S.waiting.length) { // else the next request goes when this one is answered
      S.sent = S.waiting;
      S.waiting = [];
      post();
    }
    keepUnsent();
    showSync();
  }

  // What the annotator sees of this: up to date, sending, or waiting for a slow (or gone) server.
  function showSync() {
    const el = document.getElementById("ann-sync");
    if (!el) return;
    const state = !(S.sent.length + S.waiting.length) ? "idle" : Date.now() - S.sentAt > SLOW_MS ? "slow" : "busy";
    if (el.dataset.state !== state) { el.dataset.state = state; el.textContent = SYNC_LABEL[state]; }
  }

  setInterval(() => {
    if (S.sent.length && Date.now() - S.sentAt > RESEND_MS) post();
    showSync();
  }, 1000);

  function paint(scroll) {
    const rs = rows();
    if (!rs.length) { S.cursor = 0; return; }
    S.cursor = Math.max(0, Math.min(rs.length - 1, S.cursor));
    rs.forEach((r, i) => r.classList.toggle("cur", i === S.cursor));
    if (scroll) rs[S.cursor].scrollIntoView({ block: "nearest" });
  }

  function move(step) { S.cursor += step; paint(true); }

  // The phrase box serves three modes: a new phrase, an edit of the row under the cursor, a flag's reason.
  function setMode(mode, row) {
    S.mode = mode;
    S.editRow = row;
    const label = document.getElementById("ann-mode");
    if (label) label.textContent = mode === "edit" ? `edit #${row + 1}` : mode === "flag" ? "flag" : "new";
    const ed = document.querySelector(".ann-editor");
    if (ed) { ed.classList.toggle("editing", mode === "edit"); ed.classList.toggle("flagging", mode === "flag"); }
    const b = box();
    if (b) {
      if (!b.dataset.placeholderPhrase) b.dataset.placeholderPhrase = b.placeholder;
      b.placeholder = mode === "flag" ? b.dataset.placeholderFlag : b.dataset.placeholderPhrase;
    }
  }

  function startEdit(mode) {
    const b = box();
    if (!b) return;
    const rs = rows();
    if (mode === "edit") {
      if (!rs.length) return;
      setMode("edit", S.cursor);
      b.value = rs[S.cursor].querySelector(".ph").textContent;
      typeSelect().value = rs[S.cursor].querySelector(".t").textContent.trim();
    } else {
      setMode(mode, null);
      b.value = "";
      typeSelect().value = ""; // auto: explicit when the phrase is in the input; Tab then e/i chooses
    }
    b.focus();
    b.select();
  }

  function flag() {
    const m = main();
    if (m && m.dataset.flagged === "1") send({ op: "unflag" });
    else if (m && m.dataset.key) startEdit("flag");
  }

  function leaveBox() {
    const b = box();
    if (b) { b.value = ""; b.blur(); }
    if (typeSelect()) typeSelect().blur();
    setMode("add", null);
  }

  function commit() {
    const b = box();
    const text = b ? b.value.trim() : "";
    if (S.mode === "flag") { send({ op: "flag", reason: text }); leaveBox(); return; } // a flag's reason may be empty
    if (!text) { leaveBox(); return; }
    const type = typeSelect().value || undefined; // none: the server types it by the input
    if (S.mode === "edit" && S.editRow !== null) send({ op: "edit", row: S.editRow, text, type });
    else send({ op: "add", text, type });
    leaveBox();
  }

  function decide(op) {
    if (!rows().length) return;
    send({ op, row: S.cursor });
    move(1); // the next phrase at once; the command carries the row it was meant for
  }

  function toggleHelp(show) {
    const h = help();
    if (h) h.hidden = show === undefined ? !h.hidden : !show;
  }

  function toggleReasoning() {
    const acc = document.getElementById("ann-reasoning");
    const head = acc && (acc.querySelector("button") || acc.querySelector(".label-wrap"));
    if (head) head.click();
  }

  const KEYS = {
    j: () => move(1), ArrowDown: () => move(1), k: () => move(-1), ArrowUp: () => move(-1),
    a: () => decide("accept"), x: () => decide("reject"), e: () => startEdit("edit"), n: () => startEdit("add"),
    t: () => rows().length && send({ op: "toggle", row: S.cursor }), A: () => send({ op: "accept_all" }),
    u: () => send({ op: "undo" }), d: () => send({ op: "draft" }), Enter: () => send({ op: "submit" }),
    "]": () => send({ op: "next" }), ArrowRight: () => send({ op: "next" }),
    "[": () => send({ op: "prev" }), ArrowLeft: () => send({ op: "prev" }),
    f: flag, g: toggleReasoning, r: () => send({ op: "reload" }), "?": () => toggleHelp(),
  };

  function typing(target) {
    return !!target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  // The review tab's keys: Ctrl+Enter (or Ctrl+S) saves the gold anywhere on it; outside text boxes ] and [
  // open the next and previous item, r refreshes the list, g shows or hides the teacher's reasoning.
  function button(id) {
    const el = document.getElementById(id);
    return el && el.tagName !== "BUTTON" ? el.querySelector("button") : el;
  }

  function reviewKey(e) {
    const save = button("rv-save");
    if (!visible(save)) return false;
    const ctrl = e.ctrlKey || e.metaKey;
    let target = null;
    if (ctrl && (e.key === "Enter" || e.key.toLowerCase() === "s")) target = save;
    else if (ctrl || e.altKey || typing(e.target)) return true;
    else if (e.key === "]") target = button("rv-next");
    else if (e.key === "[") target = button("rv-prev");
    else if (e.key === "r") target = button("rv-refresh");
    else if (e.key === "g") {
      const raw = document.querySelector("#rv-body details.rv-raw");
      if (raw) { e.preventDefault(); raw.open = !raw.open; }
      return true;
    }
    if (target) { e.preventDefault(); target.click(); }
    return true;
  }

  document.addEventListener("keydown", (e) => {
    if (reviewKey(e)) return;
    if (e.target && (e.target.id === "ann-phrase" || e.target.id === "ann-ptype")) {
      if (e.key === "Enter" && !e.isComposing) { e.preventDefault(); commit(); }
      else if (e.key === "Escape") { e.preventDefault(); leaveBox(); }
      return;
    }
    if (document.getElementById("ann-unsaved")) { // the notice of unsaved changes waits for its answer
      if (e.key === "Enter" || e.key === "Escape") { e.preventDefault(); acknowledgeUnsaved(); }
      return;
    }
    if (typing(e.target) || !visible(main())) return; // keys are ignored while typing, and off this tab
    if (help() && !help().hidden) {
      if (e.key === "Escape" || e.key === "?") { e.preventDefault(); toggleHelp(false); }
      return;
    }
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { e.preventDefault(); send({ op: "undo" }); return; }
    if (e.ctrlKey || e.metaKey || e.altKey) return; // leave browser shortcuts alone
    if (e.key === "Enter" && e.target && e.target.tagName === "BUTTON") return;
    const action = KEYS[e.key];
    if (!action) return;
    e.preventDefault();
    action();
  }, true);

  document.addEventListener("click", (e) => {
    const target = e.target;
    if (!(target instanceof Element)) return;
    const goto = target.closest("[data-goto]");
    if (goto) { e.preventDefault(); send({ op: "goto", target: goto.dataset.goto }); return; }
    const row = target.closest("#ann-main tr.ann-row");
    if (row) { S.cursor = Number(row.dataset.idx); paint(false); return; }
    const button = target.closest(".ann-editor [data-op], .ann-actions [data-op]");
    if (!button) { if (help() && !help().hidden && target.closest("#ann-help")) toggleHelp(false); return; }
    const op = button.dataset.op;
    button.blur();
    if (op === "accept" || op === "reject") decide(op);
    else if (op === "edit") startEdit("edit");
    else if (op === "add") startEdit("add");
    else if (op === "flag") flag();
    else if (op === "commit") commit();
    else if (op === "help") toggleHelp();
    else if (op === "toggle") { if (rows().length) send({ op: "toggle", row: S.cursor }); }
    else send({ op });
  });

  // On each new answer: forget the commands it ran, take the cursor it sets (new item, added row), send
  // what waited. An answer older than one already drawn (only after a resend) is drawn over at once.
  new MutationObserver(() => {
    const m = main();
    const answer = m ? Number(m.dataset.answer) : NaN;
    if (!Number.isFinite(answer) || answer === S.answer) return;
    if (answer < S.answer) {
      if (S.redrawn !== answer) { S.redrawn = answer; send({ op: "show" }); }
      return;
    }
    S.answer = answer; // answers only grow, and so does their ack
    S.sent = S.sent.filter((c) => c.seq > Number(m.dataset.ack));
    S.base = baseOf(m); // what is still unanswered goes on top of this answer's item and version
    if (m.dataset.key !== S.key) {
      S.key = m.dataset.key;
      if (S.mode === "edit") leaveBox();
    }
    if (m.dataset.cursorSet !== undefined) S.cursor = Number(m.dataset.cursorSet);
    paint(m.dataset.cursorSet !== undefined);
    flush();
    if (S.restore && m.dataset.key && !S.sent.length && !S.waiting.length) restoreUnsent(m);
  }).observe(document.documentElement, { childList: true, subtree: true });
})();
