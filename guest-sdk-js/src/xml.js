// Builders for the stanzas a policy writes itself.

/** Escapes text for an XML text node or attribute value. */
export function escapeText(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;',
  })[c]);
}

/**
 * A presence stanza: `type` empty for available; optional show, status and
 * priority.
 */
export function presence(type = '', { show, status, priority } = {}) {
  let out = "<presence xmlns='jabber:client'";
  if (type) out += ` type='${escapeText(type)}'`;
  out += '>';
  if (show !== undefined) out += `<show>${escapeText(show)}</show>`;
  if (status !== undefined) out += `<status>${escapeText(status)}</status>`;
  if (priority !== undefined) out += `<priority>${Number(priority)}</priority>`;
  return out + '</presence>';
}

/** A chat message with a body. */
export function chat(body) {
  return `<message xmlns='jabber:client' type='chat'><body>${escapeText(body)}</body></message>`;
}

/** The text of the first `<body>` of a stanza's XML, unescaped no further. */
export function bodyOf(xml) {
  const start = xml.indexOf('<body>');
  if (start < 0) return undefined;
  const end = xml.indexOf('</body>', start);
  return end < 0 ? undefined : xml.slice(start + 6, end);
}
