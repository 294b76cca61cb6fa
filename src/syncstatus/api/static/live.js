// Live updates: the change feed's server-sent events (GET /changes/stream), read with fetch so
// that the token goes in a header (EventSource cannot send one). Each status change asks the
// page to refresh at once; while the stream is down the page keeps polling.

import { getToken } from "./api.js";

const RETRY_MS = 3000;

function parse(block) {
  const event = { id: null, type: "message", data: null };
  for (const line of block.split("\n")) {
    const colon = line.indexOf(":");
    if (colon === 0) continue; // a comment: the heartbeat
    const [field, value] = colon < 0 ? [line, ""] : [line.slice(0, colon), line.slice(colon + 1).replace(/^ /, "")];
    if (field === "id") event.id = value;
    else if (field === "event") event.type = value;
    else if (field === "data") event.data = event.data === null ? value : `${event.data}\n${value}`;
  }
  return event;
}

/** Follow the feed for as long as the page is open: `onChange` for each status change,
 * `onState(true|false)` as the stream comes up or goes down; resumes with Last-Event-ID. */
export async function followChanges(onChange, onState) {
  let last = null;
  for (;;) {
    try {
      const headers = { Accept: "text/event-stream" };
      const token = getToken();
      if (token) headers.Authorization = `Bearer ${token}`;
      if (last) headers["Last-Event-ID"] = last;
      const response = await fetch("/changes/stream", { headers, cache: "no-store" });
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      onState(true);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replaceAll("\r\n", "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = parse(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event.id) last = event.id;
          if (event.type === "status" && event.data) onChange(JSON.parse(event.data));
        }
      }
    } catch {
      /* down: poll until it is back */
    }
    onState(false);
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}
