// Keyboard and click handling of the annotation page. The page state that matters lives on the
// server; here we only keep the row cursor and queue commands for the hidden "run" button, whose
// event takes them in order through window.__annTake (so no key press is lost or reordered).
(() => {
  if (window.__annInstalled) return;
  window.__annInstalled = true;
  const S = { cursor: 0, mode: "add", editRow: null, queue: [], render: null, key: null, seq: 0 };
  window.__annTake = () => S.queue.shift() || "{}";
  window.__annState = S; // read by the browser tests

  const main = () => document.getElementById("ann-main");
  const rows = () => Array.from(document.querySelectorAll("#ann-main tr.ann-row"));
  const box = () => document.getElementById("ann-phrase");
  const typeSelect = () => document.getElementById("ann-ptype");
  const help = () => document.getElementById("ann-help");
  const visible = (el) => !!el && el.offsetParent !== null;

  function send(command) {
    const m = main();
    command.cursor = S.cursor;
    command.seq = S.seq++; // requests may overtake each other; the server runs commands in this order
    if (m && m.dataset.key) command.key = m.dataset.key;
    S.queue.push(JSON.stringify(command));
    const run = document.getElementById("ann-run");
    if (run) run.click();
  }

  function paint(scroll) {
    const rs = rows();
    if (!rs.length) { S.cursor = 0; return; }
    S.cursor = Math.max(0, Math.min(rs.length - 1, S.cursor));
    rs.forEach((r, i) => r.classList.toggle("cur", i === S.cursor));
    if (scroll) rs[S.cursor].scrollIntoView({ block: "nearest" });
  }

  function move(step) { S.cursor += step; paint(true); }

  function setMode(mode, row) {
    S.mode = mode;
    S.editRow = row;
    const label = document.getElementById("ann-mode");
    if (label) label.textContent = mode === "edit" ? `edit #${row + 1}` : "new";
    const ed = document.querySelector(".ann-editor");
    if (ed) ed.classList.toggle("editing", mode === "edit");
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
      setMode("add", null);
      b.value = "";
      typeSelect().value = "implicit"; // an added phrase is most often inferred; Tab then e/i changes it
    }
    b.focus();
    b.select();
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
    if (!text) { leaveBox(); return; }
    const type = typeSelect().value;
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
    f: () => send({ op: "flag" }), g: toggleReasoning, r: () => send({ op: "reload" }), "?": () => toggleHelp(),
  };

  function typing(target) {
    return !!target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  document.addEventListener("keydown", (e) => {
    if (e.target && (e.target.id === "ann-phrase" || e.target.id === "ann-ptype")) {
      if (e.key === "Enter" && !e.isComposing) { e.preventDefault(); commit(); }
      else if (e.key === "Escape") { e.preventDefault(); leaveBox(); }
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
    else if (op === "commit") commit();
    else if (op === "help") toggleHelp();
    else if (op === "toggle") { if (rows().length) send({ op: "toggle", row: S.cursor }); }
    else send({ op });
  });

  // Each server render carries a number; on a new one, take the cursor it sets (new item, added row).
  new MutationObserver(() => {
    const m = main();
    if (!m || m.dataset.render === S.render) return;
    S.render = m.dataset.render;
    if (m.dataset.key !== S.key) {
      S.key = m.dataset.key;
      if (S.mode === "edit") leaveBox();
    }
    if (m.dataset.cursorSet !== undefined) S.cursor = Number(m.dataset.cursorSet);
    paint(m.dataset.cursorSet !== undefined);
  }).observe(document.documentElement, { childList: true, subtree: true });
})();
