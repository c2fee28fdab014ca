// The saga explorer's script: the page refreshes itself in place, and the replay buttons
// post to the admin endpoint with the token the user gives once per tab.
"use strict";

const TOKEN_KEY = "sagakit-admin-token";

function clock() {
  return new Date().toISOString().slice(11, 19);
}

function notify(text, bad) {
  const notice = document.getElementById("notice");
  notice.textContent = text;
  notice.className = bad ? "bad" : "";
  notice.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { notice.hidden = true; }, 6000);
}

// Someone typing in the filters, or answering the token dialog, must not lose what they did.
function busy() {
  const active = document.activeElement;
  const editing = active && ["INPUT", "SELECT", "TEXTAREA"].includes(active.tagName);
  return editing || document.getElementById("token-dialog").open;
}

async function refresh() {
  if (document.hidden || busy()) {
    return;
  }
  const stamp = document.getElementById("refreshed");
  try {
    const response = await fetch(window.location.href, { cache: "no-store" });
    if (!response.ok) {
      stamp.textContent = `refresh failed: ${response.status} (${clock()} UTC)`;
      return;
    }
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    if (busy()) {
      return;
    }
    document.getElementById("content").replaceWith(page.getElementById("content"));
    stamp.textContent = page.getElementById("refreshed").textContent;
  } catch (error) {
    stamp.textContent = `refresh failed: the order service does not answer (${clock()} UTC)`;
  }
}

function askForToken() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  input.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok" && input.value ? input.value : null);
    }, { once: true });
    dialog.showModal();
  });
}

async function replay(button) {
  let token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    token = await askForToken();
    if (!token) {
      return;
    }
  }
  const { topic, partition, offset } = button.dataset;
  const where = `${topic}[${partition}]@${offset}`;
  button.disabled = true;
  try {
    const response = await fetch(button.dataset.url || "/ui/replay", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify({ topic, partition: Number(partition), offset: Number(offset) }),
    });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      notify(`wrong admin token: nothing replayed (${body.detail || response.status})`, true);
      return;
    }
    if (!response.ok) {
      notify(`replay of ${where} failed: ${body.detail || response.status}`, true);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    notify(`replayed ${where}: its consumers read it again`);
    await refresh();
  } catch (error) {
    notify(`replay of ${where} failed: the order service does not answer`, true);
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.replay");
  if (button) {
    event.preventDefault();
    replay(button);
  }
});

const seconds = Number(document.body.dataset.refreshSeconds) || 3;
setInterval(refresh, seconds * 1000);
