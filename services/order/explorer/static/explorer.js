// The saga explorer's script: the page refreshes itself in place, and the replay buttons
// post to the admin endpoints with the token the user gives once per tab. A group's replay
// asks for a dry run first and shows its count and sagas; only a confirmation starts it.
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
  // Nor someone reading a value opened whole (a message on the topic pages).
  return editing || document.getElementById("token-dialog").open ||
    document.getElementById("bulk-dialog").open ||
    document.querySelector("#content details[open]") !== null;
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

async function adminPost(url, token, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (response.status === 401 || response.status === 403) {
    sessionStorage.removeItem(TOKEN_KEY);
  }
  return { response, answer };
}

function confirmBulk(preview, question = null, verb = "replay them") {
  const dialog = document.getElementById("bulk-dialog");
  const sagas = preview.orders > preview.order_ids.length ? ` (and ${preview.orders - preview.order_ids.length} more)` : "";
  const refused = preview.refused ? ` ${preview.refused} of them are older than the inboxes' memory and will be refused.` : "";
  document.getElementById("bulk-summary").textContent =
    question || `Replay ${preview.count} dead letter(s) of ${preview.orders} saga(s)?${refused}`;
  document.getElementById("bulk-sagas").textContent = `sagas: ${preview.order_ids.join(", ")}${sagas}`;
  document.getElementById("bulk-ok").textContent = verb;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

async function replayGroup(button) {
  let token = sessionStorage.getItem(TOKEN_KEY) || await askForToken();
  if (!token) {
    return;
  }
  const { topic, group, error } = button.dataset;
  const selection = { topic, consumer_group: group || null, error_type: error || null };
  button.disabled = true;
  try {
    const query = new URLSearchParams(Object.entries(selection).filter(([, v]) => v));
    const response = await fetch(`/bulk/replay?${query}`, { headers: { Authorization: `Bearer ${token}` } });
    const dry = { response, answer: await response.json().catch(() => ({})) };
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
    }
    if (!dry.response.ok) {
      notify(`replay of the group refused: ${dry.answer.detail || dry.response.status}`, true);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    if (dry.answer.count === 0) {
      notify("nothing to replay in that group: a group replay sent them already");
      return;
    }
    if (!await confirmBulk(dry.answer)) {
      notify("nothing replayed");
      return;
    }
    const body = { ...selection, expected: dry.answer.count };
    const started = await adminPost("/bulk/replay", token, body);
    if (!started.response.ok) {
      notify(`replay of the group refused: ${started.answer.detail || started.response.status}`, true);
      return;
    }
    notify(`replaying ${started.answer.total} dead letter(s), paced: bulk action ${started.answer.action_id.slice(0, 8)}`);
    await refresh();
  } catch (failure) {
    notify("replay of the group failed: the order service does not answer", true);
  } finally {
    button.disabled = false;
  }
}

async function cancelStuck(button) {
  let token = sessionStorage.getItem(TOKEN_KEY) || await askForToken();
  if (!token) {
    return;
  }
  button.disabled = true;
  try {
    const response = await fetch("/bulk/cancel-stuck", { headers: { Authorization: `Bearer ${token}` } });
    const preview = await response.json().catch(() => ({}));
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
    }
    if (!response.ok) {
      notify(`cancel of the stuck sagas refused: ${preview.detail || response.status}`, true);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    if (preview.count === 0) {
      notify("no stuck saga to cancel");
      return;
    }
    const question = `Cancel ${preview.count} stuck saga(s) as timed out? Payment refunds and inventory releases follow.`;
    if (!await confirmBulk(preview, question, "cancel them")) {
      notify("nothing cancelled");
      return;
    }
    const started = await adminPost("/bulk/cancel-stuck", token, { expected: preview.count });
    if (!started.response.ok) {
      notify(`cancel of the stuck sagas refused: ${started.answer.detail || started.response.status}`, true);
      return;
    }
    notify(`cancelling ${started.answer.total} stuck saga(s), paced: bulk action ${started.answer.action_id.slice(0, 8)}`);
    await refresh();
  } catch (failure) {
    notify("cancel of the stuck sagas failed: the order service does not answer", true);
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.replay");
  if (button) {
    event.preventDefault();
    replay(button);
    return;
  }
  const group = event.target.closest("button.replay-group");
  if (group) {
    event.preventDefault();
    replayGroup(group);
    return;
  }
  const stuck = event.target.closest("button.cancel-stuck");
  if (stuck) {
    event.preventDefault();
    cancelStuck(stuck);
  }
});

const seconds = Number(document.body.dataset.refreshSeconds) || 3;
setInterval(refresh, seconds * 1000);
