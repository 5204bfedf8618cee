// The WIT types of `pizzja:policy/types`, as one byte buffer.
//
// A measured alternative to the typed WIT (BENCHMARKS.md): one `list<u8>`
// each way instead of the canonical ABI's value per field. This file is
// included, not a module of its own, in the two crates that speak it (the
// probe component, the host's micro-benchmark), each with its own generated
// copy of the types in scope, so both ends are the same source.
//
// The format: little-endian integers; a string is a u32 byte length and its
// UTF-8; an option a 0/1 byte and the value; a list a u32 count and the
// items; a record its fields in WIT order; a variant or enum a u8 case (WIT
// order) and its payload.

/// Why a buffer did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// It ended inside a value.
    Truncated,
    /// A case number no variant or enum has.
    BadCase(&'static str, u8),
    /// A string that is not UTF-8.
    NotUtf8,
    /// Bytes left after the value.
    Trailing,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::Truncated => f.write_str("the buffer ends inside a value"),
            WireError::BadCase(what, n) => write!(f, "{what} has no case {n}"),
            WireError::NotUtf8 => f.write_str("a string is not UTF-8"),
            WireError::Trailing => f.write_str("bytes are left after the value"),
        }
    }
}

/// Reads values from a buffer, front to back.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Ends reading: an error if bytes are left.
    pub fn finish(self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing)
        }
    }
}

/// A value with a place in the format.
pub trait Wire: Sized {
    /// Appends the value.
    fn put(&self, out: &mut Vec<u8>);
    /// Reads one value.
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError>;
}

/// Encodes one value.
pub fn encode<T: Wire>(value: &T, out: &mut Vec<u8>) {
    value.put(out);
}

/// Decodes exactly one value from `bytes`.
pub fn decode<T: Wire>(bytes: &[u8]) -> Result<T, WireError> {
    let mut r = Reader::new(bytes);
    let value = T::get(&mut r)?;
    r.finish()?;
    Ok(value)
}

impl Wire for String {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        out.extend_from_slice(self.as_bytes());
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let n = r.u32()? as usize;
        let bytes = r.take(n)?;
        core::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| WireError::NotUtf8)
    }
}

impl Wire for u64 {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let b = r.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

impl Wire for i8 {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(r.byte()? as i8)
    }
}

impl<T: Wire> Wire for Option<T> {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.put(out);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        match r.byte()? {
            0 => Ok(None),
            1 => Ok(Some(T::get(r)?)),
            n => Err(WireError::BadCase("option", n)),
        }
    }
}

impl<T: Wire> Wire for Vec<T> {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        for v in self {
            v.put(out);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let n = r.u32()? as usize;
        // Each item takes a byte at least: a count past the end is a lie,
        // and must not reserve memory for it.
        if n > r.rest.len() {
            return Err(WireError::Truncated);
        }
        (0..n).map(|_| T::get(r)).collect()
    }
}

/// Records: their fields in order.
macro_rules! wire_record {
    ($t:ident { $($f:ident),* $(,)? }) => {
        impl Wire for $t {
            fn put(&self, out: &mut Vec<u8>) {
                $( self.$f.put(out); )*
            }
            fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
                Ok($t { $( $f: Wire::get(r)?, )* })
            }
        }
    };
}

/// Enums: a case byte.
macro_rules! wire_enum {
    ($t:ident { $($case:ident = $n:literal),* $(,)? }) => {
        impl Wire for $t {
            fn put(&self, out: &mut Vec<u8>) {
                out.push(match self { $( $t::$case => $n, )* });
            }
            fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
                match r.byte()? {
                    $( $n => Ok($t::$case), )*
                    n => Err(WireError::BadCase(stringify!($t), n)),
                }
            }
        }
    };
}

/// Variants whose cases all carry a payload (or none, with `()`).
macro_rules! wire_variant {
    ($t:ident { $($case:ident ($($p:ty)?) = $n:literal),* $(,)? }) => {
        impl Wire for $t {
            fn put(&self, out: &mut Vec<u8>) {
                match self {
                    $( wire_variant!(@pat $t $case v $($p)?) => {
                        out.push($n);
                        wire_variant!(@put v out $($p)?);
                    } )*
                }
            }
            fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
                match r.byte()? {
                    $( $n => Ok(wire_variant!(@get $t $case r $($p)?)), )*
                    n => Err(WireError::BadCase(stringify!($t), n)),
                }
            }
        }
    };
    (@pat $t:ident $case:ident $v:ident $p:ty) => { $t::$case($v) };
    (@pat $t:ident $case:ident $v:ident) => { $t::$case };
    (@put $v:ident $out:ident $p:ty) => { $v.put($out) };
    (@put $v:ident $out:ident) => { () };
    (@get $t:ident $case:ident $r:ident $p:ty) => { $t::$case(<$p as Wire>::get($r)?) };
    (@get $t:ident $case:ident $r:ident) => { $t::$case };
}

wire_enum!(StanzaKind { Message = 0, Presence = 1, Iq = 2 });
wire_record!(Stanza { kind, type_, id, from, to, xml });
wire_record!(IqRequest { requester, peer, payload_ns });
wire_record!(LocalStanza { stanza, sender_resource, answers });
wire_record!(ForeignStanza { session, stanza, answers });
wire_enum!(SessionState { Connecting = 0, Online = 1, Reconnecting = 2, Failed = 3, Closed = 4 });
wire_record!(SessionChange { session, state, reason });
wire_variant!(Event { Local(LocalStanza) = 0, Foreign(ForeignStanza) = 1, Session(SessionChange) = 2 });
wire_record!(Controller { resource, show, status, priority, online_since_ms, last_active_ms });
wire_record!(Session { resource, state });
wire_record!(Facts { local_jid, foreign_jid, gateway, controllers, sessions, now_ms });
wire_variant!(Content { Original() = 0, Xml(String) = 1 });
wire_record!(RequestTie { namespace, request, reply, attribute });
wire_record!(SendForeign { session, to, content, ties });
wire_record!(SendLocal { to_resource, from_node, from_resource, content });
wire_enum!(ErrorType { Auth = 0, Cancel = 1, Continue = 2, Modify = 3, Wait = 4 });
wire_record!(StanzaError { type_, condition, text });
wire_enum!(LogLevel { Trace = 0, Debug = 1, Info = 2, Warn = 3, Error = 4 });
wire_record!(LogLine { level, message });
wire_variant!(Action {
    SendForeign(SendForeign) = 0,
    SendLocal(SendLocal) = 1,
    OpenSession(String) = 2,
    CloseSession(String) = 3,
    ReplyError(StanzaError) = 4,
    Log(LogLine) = 5,
});

/// The input of one decision: the event and the account's facts.
pub fn encode_input(event: &Event, facts: &Facts, out: &mut Vec<u8>) {
    event.put(out);
    facts.put(out);
}

/// Reads what [`encode_input`] wrote.
pub fn decode_input(bytes: &[u8]) -> Result<(Event, Facts), WireError> {
    let mut r = Reader::new(bytes);
    let event = Event::get(&mut r)?;
    let facts = Facts::get(&mut r)?;
    r.finish()?;
    Ok((event, facts))
}
