// Chat page logic: keeps the conversation in the browser, sends it whole to
// POST v1/chat/completions with "stream": true and shows the reply as its Server-Sent Events
// arrive. Model and user text only ever go through textContent, never parsed as HTML.
"use strict";

(function () {
  const API_URL = "v1/chat/completions"; // relative, so the page also works under a path prefix
  const KEY_STORAGE = "chatbot.apiKey";
  const DECODING_STORAGE = "chatbot.decoding";
  const BUSY_RETRIES = 3; // a busy server (429/503 with Retry-After) is asked again this often
  const MAX_RETRY_WAIT_S = 10;

  const $ = (id) => document.getElementById(id);
  const log = $("log");
  const form = $("chat-form");
  const input = $("message");
  const send = $("send");
  const errorBox = $("error");
  const statusBox = $("status");
  const settings = $("settings");
  const strategy = $("strategy");
  const beamWidth = $("beam-width");
  const temperature = $("temperature");
  const apiKey = $("api-key");

  let conversation = []; // [{role, content}], oldest first; only completed exchanges
  let inFlight = null; // AbortController of the request being answered

  function load(name, fallback) {
    try {
      const value = window.localStorage.getItem(name);
      return value === null ? fallback : value;
    } catch (e) {
      return fallback; // storage disabled: settings just are not remembered
    }
  }

  function store(name, value) {
    try {
      window.localStorage.setItem(name, value);
    } catch (e) {
      /* storage disabled */
    }
  }

  function restoreSettings() {
    apiKey.value = load(KEY_STORAGE, "");
    try {
      const saved = JSON.parse(load(DECODING_STORAGE, "{}")) || {};
      if (["greedy", "beam", "sample"].includes(saved.strategy)) strategy.value = saved.strategy;
      if (saved.beam_width) beamWidth.value = saved.beam_width;
      if (saved.temperature) temperature.value = saved.temperature;
    } catch (e) {
      /* ignore a corrupt entry */
    }
    showStrategyFields();
  }

  function saveSettings() {
    store(KEY_STORAGE, apiKey.value.trim());
    store(
      DECODING_STORAGE,
      JSON.stringify({
        strategy: strategy.value,
        beam_width: beamWidth.value,
        temperature: temperature.value,
      })
    );
  }

  function showStrategyFields() {
    $("beam-width-field").hidden = strategy.value !== "beam";
    $("temperature-field").hidden = strategy.value !== "sample";
  }

  /** The `decoding` extension field for the chosen strategy. */
  function decodingOptions() {
    const options = { strategy: strategy.value };
    if (strategy.value === "beam") {
      const width = parseInt(beamWidth.value, 10);
      if (width >= 1) options.beam_width = width;
    } else if (strategy.value === "sample") {
      const t = parseFloat(temperature.value);
      if (t > 0) options.temperature = t;
    }
    return options;
  }

  function addMessage(role, text) {
    const item = document.createElement("div");
    item.className = "msg " + role;
    item.dataset.role = role;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "Bot";
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    item.append(who, body);
    log.append(item);
    log.scrollTop = log.scrollHeight;
    return item;
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.textContent = "";
    errorBox.hidden = true;
  }

  function setBusy(busy) {
    send.disabled = busy;
    log.setAttribute("aria-busy", busy ? "true" : "false");
    statusBox.textContent = busy ? "Waiting for the reply\u2026" : "";
  }

  function sleep(seconds, signal) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, seconds * 1000);
      signal.addEventListener(
        "abort",
        () => {
          clearTimeout(timer);
          reject(new DOMException("Aborted", "AbortError"));
        },
        { once: true }
      );
    });
  }

  /** POST the request; while the server says it is busy (429 or 503 with Retry-After), wait
   * as long as it asks (within MAX_RETRY_WAIT_S) and ask again, up to BUSY_RETRIES times. */
  async function post(init, signal) {
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(API_URL, Object.assign({ signal: signal }, init));
      const wait = parseInt(response.headers.get("Retry-After") || "", 10);
      const busy = response.status === 429 || response.status === 503;
      if (!busy || !(wait >= 0) || attempt >= BUSY_RETRIES) return response;
      const seconds = Math.min(wait, MAX_RETRY_WAIT_S);
      statusBox.textContent = "The server is busy; asking again in " + seconds + " s\u2026";
      await sleep(seconds, signal);
      setBusy(true);
    }
  }

  /** A readable sentence for an HTTP error: this server's {"error": {"message", "type"}},
   * FastAPI's {"detail": "..."} or {"detail": [{"loc", "msg"}, ...]}, or the raw body. */
  function describeHttpError(response, bodyText) {
    let what = "";
    try {
      const data = JSON.parse(bodyText);
      if (data && data.error && typeof data.error === "object") {
        what = String(data.error.message || data.error.type || "");
      } else if (data && typeof data.detail === "string") {
        what = data.detail;
      } else if (data && Array.isArray(data.detail)) {
        what = data.detail
          .map((d) => {
            const loc = (d.loc || []).filter((part) => part !== "body").join(".");
            return (loc ? loc + ": " : "") + (d.msg || JSON.stringify(d));
          })
          .join("\n");
      }
    } catch (e) {
      what = bodyText.trim().slice(0, 500);
    }
    const head = "Error " + response.status + (response.statusText ? " " + response.statusText : "");
    let message = head + (what ? ": " + what : "");
    if (response.status === 401) {
      message += "\nEnter the server's API key under Settings.";
      settings.open = true;
    }
    return message;
  }

  /** Feeds each `data:` payload of an SSE stream to onData; resolves true once [DONE] came. */
  async function readEvents(response, onData) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
      buffer = buffer.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (!data) continue;
        if (data === "[DONE]") {
          reader.cancel().catch(() => {});
          return true;
        }
        onData(JSON.parse(data));
      }
      if (done) return false;
    }
  }

  async function ask(text) {
    const messages = conversation.concat([{ role: "user", content: text }]);
    const headers = { "Content-Type": "application/json", Accept: "text/event-stream" };
    const key = apiKey.value.trim();
    if (key) headers.Authorization = "Bearer " + key;
    const body = { messages: messages, stream: true, decoding: decodingOptions() };

    const userItem = addMessage("user", text);
    const botItem = addMessage("assistant", "");
    botItem.setAttribute("aria-busy", "true");
    const textNode = botItem.querySelector(".text");
    let reply = "";
    const controller = new AbortController();
    inFlight = controller;
    setBusy(true);
    try {
      const init = { method: "POST", headers: headers, body: JSON.stringify(body) };
      const response = await post(init, controller.signal);
      if (!response.ok) throw new Error(describeHttpError(response, await response.text()));
      const type = response.headers.get("content-type") || "";
      if (type.includes("text/event-stream")) {
        const finished = await readEvents(response, (chunk) => {
          if (chunk.error) throw new Error("Error: " + (chunk.error.message || chunk.error));
          for (const choice of chunk.choices || []) {
            const piece = choice.index === 0 && choice.delta ? choice.delta.content : null;
            if (piece) {
              reply += piece;
              textNode.textContent = reply;
              log.scrollTop = log.scrollHeight;
            }
          }
        });
        if (!finished) throw new Error("The connection closed before the reply finished.");
      } else {
        const data = await response.json(); // a server that ignores "stream"
        reply = data.choices[0].message.content || "";
        textNode.textContent = reply;
      }
      if (!reply) {
        const note = document.createElement("span");
        note.className = "note";
        note.textContent = "(empty reply)";
        botItem.append(note);
      }
      botItem.setAttribute("aria-busy", "false");
      botItem.dataset.done = "true";
      conversation = messages.concat([{ role: "assistant", content: reply }]);
    } catch (error) {
      userItem.remove();
      botItem.remove();
      if (controller.signal.aborted) return; // "New conversation" cancelled it
      if (!input.value) input.value = text; // give the message back to retry
      const message = error instanceof TypeError
        ? "Could not reach the server: " + error.message
        : error instanceof SyntaxError
          ? "The server sent a reply this page cannot read: " + error.message
          : error.message;
      showError(message);
    } finally {
      if (inFlight === controller) {
        inFlight = null;
        setBusy(false);
      }
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || inFlight) return;
    clearError();
    input.value = "";
    ask(text);
  });

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  $("new-conversation").addEventListener("click", () => {
    if (inFlight) inFlight.abort();
    inFlight = null;
    setBusy(false);
    conversation = [];
    log.replaceChildren();
    clearError();
    input.focus();
  });

  $("settings-form").addEventListener("submit", (event) => event.preventDefault());
  $("settings-form").addEventListener("input", saveSettings);
  $("settings-form").addEventListener("change", () => {
    saveSettings();
    showStrategyFields();
  });

  restoreSettings();
  document.documentElement.dataset.ready = "true";
})();
