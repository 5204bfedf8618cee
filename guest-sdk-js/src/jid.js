// JIDs split into parts, as the gateway's addresses need them; not a full
// RFC 7622 validator (the host checks every address it sends).

/**
 * A JID's parts, or `undefined` when `jid` cannot be one: an empty part, a
 * second '@', a trailing '/'.
 * @param {string | undefined} jid
 * @returns {{node?: string, domain: string, resource?: string} | undefined}
 */
export function parseJid(jid) {
  if (typeof jid !== 'string') return undefined;
  let bare = jid;
  let resource;
  const slash = jid.indexOf('/');
  if (slash >= 0) {
    bare = jid.slice(0, slash);
    resource = jid.slice(slash + 1);
    if (resource === '') return undefined;
  }
  let node;
  let domain = bare;
  const at = bare.lastIndexOf('@');
  if (at >= 0) {
    node = bare.slice(0, at);
    domain = bare.slice(at + 1);
    if (node === '' || node.includes('@')) return undefined;
  }
  if (domain === '') return undefined;
  return { node, domain, resource };
}

/** `node@domain`, or `domain`. */
export function bare(parts) {
  return parts.node === undefined ? parts.domain : `${parts.node}@${parts.domain}`;
}

/** `node@domain/resource`, with the parts that are there. */
export function full(parts) {
  return parts.resource === undefined ? bare(parts) : `${bare(parts)}/${parts.resource}`;
}

/**
 * A local resource `A/B` split at its first '/': `[A, B]` (`B` empty when
 * there is none). `A` names the foreign session the resource controls.
 * @param {string} resource
 * @returns {[string, string]}
 */
export function splitResource(resource) {
  const slash = resource.indexOf('/');
  return slash < 0 ? [resource, ''] : [resource.slice(0, slash), resource.slice(slash + 1)];
}
