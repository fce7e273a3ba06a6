// The reviewers' page: re-renders the list (server-rendered HTML, escaped
// by html/template) when the event stream says an approval changed, and
// sends approve/deny with the session's CSRF token.
"use strict";
(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const list = document.getElementById("list");
  const live = document.getElementById("live");
  const notes = new Map(); // approval id -> {ok, text}: survives re-renders
  const drafts = new Map(); // approval id -> comment being typed
  let busy = false, again = false;

  const setLive = (state, text) => { live.dataset.state = state; live.textContent = text; };

  function restore() {
    for (const card of list.querySelectorAll("article[data-id]")) {
      const id = card.dataset.id;
      const ta = card.querySelector("textarea[name=comment]");
      if (ta && drafts.has(id)) ta.value = drafts.get(id);
      const n = notes.get(id);
      if (n) {
        const p = card.querySelector(".note");
        p.hidden = false;
        p.textContent = n.text;
        p.className = "note " + (n.ok ? "ok" : "refusal");
      }
    }
  }

  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      do {
        again = false;
        const r = await fetch("/ui/list", { cache: "no-store" });
        if (r.status === 401) { signedOut(); return; }
        if (!r.ok) throw new Error("HTTP " + r.status);
        const html = await r.text();
        for (const ta of list.querySelectorAll("textarea[name=comment]")) {
          drafts.set(ta.closest("article").dataset.id, ta.value);
        }
        const doc = new DOMParser().parseFromString(html, "text/html");
        list.replaceChildren(...doc.body.childNodes);
        restore();
      } while (again);
    } catch (e) {
      setLive("down", "could not refresh (" + e.message + ")");
    } finally {
      busy = false;
    }
  }

  function signedOut() {
    setLive("down", "signed out: reload to sign in again");
    for (const b of list.querySelectorAll("button, textarea")) b.disabled = true;
  }

  list.addEventListener("submit", async (e) => {
    const form = e.target.closest("form.review");
    if (!form) return;
    e.preventDefault();
    const id = form.closest("article").dataset.id;
    const body = new URLSearchParams(new FormData(form, e.submitter));
    for (const b of form.querySelectorAll("button")) b.disabled = true;
    let note;
    try {
      const r = await fetch(form.action, { method: "POST", headers: { "X-CSRF-Token": csrf }, body });
      const j = await r.json().catch(() => ({}));
      note = r.ok ? { ok: true, text: "You " + (j.message || "reviewed it") } : { ok: false, text: "Refused: " + (j.detail || j.title || "HTTP " + r.status) };
      if (r.status === 401) signedOut();
    } catch (err) {
      note = { ok: false, text: "Not sent: " + err.message };
    }
    notes.set(id, note);
    drafts.delete(id);
    restore();
    for (const b of form.querySelectorAll("button")) b.disabled = false;
    refresh();
  });

  const es = new EventSource("/ui/events");
  es.addEventListener("change", refresh);
  es.onopen = () => { setLive("live", "live"); refresh(); };
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) signedOut();
    else setLive("down", "reconnecting…");
  };
})();
