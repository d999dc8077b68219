//! Dialogs (compact owned copies of the few fields a proxy needs) and dialog profiles.

use std::any::Any;
use std::collections::HashMap;

use sip_txn::Time;

use crate::types::{Destination, Source};

/// A handle to a dialog of a [`crate::ProxyCore`]; stale handles are detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

/// Dialog states (OpenSIPS numbering in the docs: 1..5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DialogState {
    /// 1: the initial INVITE was forwarded, no answer with a To tag yet.
    Unconfirmed,
    /// 2: a provisional response with a To tag came.
    Early,
    /// 3: a 2xx came, no ACK yet.
    ConfirmedNoAck,
    /// 4: the ACK of the 2xx passed.
    Confirmed,
    /// 5: over (only seen in events).
    Ended,
}

/// Why a dialog ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The caller sent BYE.
    ByeFromCaller,
    /// The callee sent BYE.
    ByeFromCallee,
    /// The caller cancelled the INVITE.
    Cancelled,
    /// The INVITE got a final failure (or no answer at all).
    Failed,
    /// The lifetime limit ran out; BYE sent to both sides.
    LifetimeTimeout,
    /// A side stopped answering in-dialog OPTIONS; BYE sent to both sides.
    PingTimeout,
    /// Ended through the management API; BYE sent to both sides.
    Management,
}

/// A dialog state change, for metrics and CDR hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogEvent {
    /// The dialog.
    pub id: DialogId,
    /// Its new state.
    pub state: DialogState,
    /// Why it ended, with [`DialogState::Ended`].
    pub reason: Option<EndReason>,
    /// The dialog's Call-ID (a CDR's key).
    pub call_id: Box<[u8]>,
    /// When it happened (the time given to the entry point): CDRs take set-up, answer and
    /// end times from these.
    pub at: Time,
}

/// Per-dialog data other modules hang on a dialog (topology hiding, CDRs...), keyed by type.
/// Empty costs one pointer in the dialog.
#[derive(Default)]
pub struct Extensions {
    slots: Vec<Box<dyn Any + Send>>,
}

impl core::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Extensions({})", self.slots.len())
    }
}

impl Extensions {
    /// The value of type `T`, if set.
    #[must_use]
    pub fn get<T: Any + Send>(&self) -> Option<&T> {
        self.slots.iter().find_map(|b| b.downcast_ref::<T>())
    }

    /// The value of type `T`, to change.
    pub fn get_mut<T: Any + Send>(&mut self) -> Option<&mut T> {
        self.slots.iter_mut().find_map(|b| b.downcast_mut::<T>())
    }

    /// Sets the value of type `T` (replacing one there).
    pub fn insert<T: Any + Send>(&mut self, value: T) {
        if let Some(v) = self.get_mut::<T>() {
            *v = value;
        } else {
            self.slots.push(Box::new(value));
        }
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: Any + Send>(&mut self) -> Option<T> {
        let i = self.slots.iter().position(|b| b.is::<T>())?;
        self.slots.swap_remove(i).downcast::<T>().ok().map(|b| *b)
    }
}

/// The owned text fields of a dialog, in one buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum F {
    CallId = 0,
    CallerTag,
    CalleeTag,
    /// The caller's From value (with its tag).
    From,
    /// The callee's To value (with its tag, once known).
    To,
    CallerContact,
    CalleeContact,
    /// Route values from us toward the caller, comma separated, first hop first.
    RoutesToCaller,
    /// Route values from us toward the callee.
    RoutesToCallee,
}
const NF: usize = 9;

/// One dialog: compact owned copies of the few fields the proxy needs (not messages).
#[derive(Debug)]
pub struct Dialog {
    strs: Box<[u8]>,
    ends: [u16; NF],
    pub(crate) state: DialogState,
    pub(crate) caller: Source,
    pub(crate) callee: Option<(crate::Transport, std::net::SocketAddr)>,
    pub(crate) caller_cseq: u32,
    pub(crate) callee_cseq: u32,
    /// Added to the caller's CSeq numbers toward the callee (its challenge was answered).
    pub(crate) cseq_delta: u32,
    pub(crate) created: Time,
    pub(crate) deadline_end: Option<Time>,
    pub(crate) lifetime_end: Option<Time>,
    pub(crate) next_ping: Option<Time>,
    pub(crate) lifetime_us: u64,
    pub(crate) profiles: Vec<(u16, u32)>,
    /// Other modules' data.
    pub ext: Option<Box<Extensions>>,
}

impl Dialog {
    pub(crate) fn new(caller: Source, created: Time) -> Dialog {
        Dialog {
            strs: Box::default(),
            ends: [0; NF],
            state: DialogState::Unconfirmed,
            caller,
            callee: None,
            caller_cseq: 0,
            callee_cseq: 0,
            cseq_delta: 0,
            created,
            deadline_end: None,
            lifetime_end: None,
            next_ping: None,
            lifetime_us: 0,
            profiles: Vec::new(),
            ext: None,
        }
    }

    pub(crate) fn get(&self, f: F) -> &[u8] {
        let i = f as usize;
        let start = if i == 0 {
            0
        } else {
            self.ends.get(i - 1).copied().unwrap_or(0)
        };
        let end = self.ends.get(i).copied().unwrap_or(0);
        self.strs
            .get(usize::from(start)..usize::from(end))
            .unwrap_or(b"")
    }

    /// Sets several fields at once (the buffer is rebuilt; fields over 64 KiB total are
    /// cut).
    pub(crate) fn set(&mut self, updates: &[(F, &[u8])]) {
        let mut buf = Vec::with_capacity(self.strs.len() + 64);
        let mut ends = [0u16; NF];
        for (i, end) in ends.iter_mut().enumerate() {
            let v = updates
                .iter()
                .rev()
                .find(|(f, _)| *f as usize == i)
                .map_or_else(|| self.field_by_index(i), |(_, v)| *v);
            let room = usize::from(u16::MAX).saturating_sub(buf.len());
            buf.extend_from_slice(v.get(..v.len().min(room)).unwrap_or(b""));
            *end = u16::try_from(buf.len()).unwrap_or(u16::MAX);
        }
        self.strs = buf.into_boxed_slice();
        self.ends = ends;
    }

    fn field_by_index(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.ends.get(i - 1).copied().unwrap_or(0)
        };
        let end = self.ends.get(i).copied().unwrap_or(0);
        self.strs
            .get(usize::from(start)..usize::from(end))
            .unwrap_or(b"")
    }

    /// The state.
    #[must_use]
    pub fn state(&self) -> DialogState {
        self.state
    }

    /// The Call-ID.
    #[must_use]
    pub fn call_id(&self) -> &[u8] {
        self.get(F::CallId)
    }

    /// The caller's From value.
    #[must_use]
    pub fn caller(&self) -> &[u8] {
        self.get(F::From)
    }

    /// The callee's To value.
    #[must_use]
    pub fn callee(&self) -> &[u8] {
        self.get(F::To)
    }

    /// Heap bytes this dialog owns (its text buffer, profile list and extension box).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.strs.len()
            + self.profiles.capacity() * core::mem::size_of::<(u16, u32)>()
            + self
                .ext
                .as_ref()
                .map_or(0, |_| core::mem::size_of::<Extensions>())
    }

    pub(crate) fn next_deadline(&self) -> Option<Time> {
        match (self.deadline_end, self.next_ping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn callee_dest(&self) -> Option<Destination> {
        self.callee.map(|(t, a)| Destination::new(t, a))
    }
}

/// A dialog as the management API shows it (plain owned data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogInfo {
    /// The handle (for [`crate::ProxyCore::end_dialog`]).
    pub id: DialogId,
    /// State.
    pub state: DialogState,
    /// Call-ID.
    pub call_id: String,
    /// The caller's From value.
    pub caller: String,
    /// The callee's To value.
    pub callee: String,
    /// Microseconds since creation (at the time given to the query).
    pub age_us: u64,
    /// The profiles it is in: (name, value).
    pub profiles: Vec<(String, Option<String>)>,
}

/// A filter for [`crate::ProxyCore::list_dialogs`]; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct DialogFilter<'a> {
    /// In this profile (with this value, when given).
    pub profile: Option<(&'a str, Option<&'a [u8]>)>,
    /// The caller's From value contains this.
    pub caller: Option<&'a [u8]>,
    /// The callee's To value contains this.
    pub callee: Option<&'a [u8]>,
}

/// Named counters calls join and leave (OpenSIPS `profiles_with_value` /
/// `profiles_no_value`). A profile is created on first use.
#[derive(Debug, Default)]
pub struct Profiles {
    names: Vec<String>,
    /// Interned values (index 0 = no value), with how many memberships use each; a value
    /// no call uses is forgotten (its id reused), so values cannot pile up.
    values: Vec<(Box<[u8]>, u32)>,
    value_ids: HashMap<Box<[u8]>, u32>,
    free_values: Vec<u32>,
    /// (profile, value id) -> count.
    counts: HashMap<(u16, u32), u32>,
    totals: Vec<u64>,
}

impl Profiles {
    pub(crate) fn profile_id(&mut self, name: &str) -> Option<u16> {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return u16::try_from(i).ok();
        }
        let id = u16::try_from(self.names.len()).ok()?;
        self.names.push(name.to_owned());
        self.totals.push(0);
        Some(id)
    }

    fn find_profile(&self, name: &str) -> Option<u16> {
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| u16::try_from(i).ok())
    }

    /// The id of `value` (interned; call [`Profiles::add`] with it right after).
    pub(crate) fn value_id(&mut self, value: Option<&[u8]>) -> u32 {
        let Some(v) = value else { return 0 };
        if self.values.is_empty() {
            self.values.push((Box::default(), 0));
        }
        if let Some(&id) = self.value_ids.get(v) {
            return id;
        }
        let id = match self.free_values.pop() {
            Some(id) => {
                if let Some(slot) = self.values.get_mut(id as usize) {
                    *slot = (v.into(), 0);
                }
                id
            }
            None => {
                let id = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
                self.values.push((v.into(), 0));
                id
            }
        };
        self.value_ids.insert(v.into(), id);
        id
    }

    fn find_value(&self, value: Option<&[u8]>) -> Option<u32> {
        match value {
            None => Some(0),
            Some(v) => self.value_ids.get(v).copied(),
        }
    }

    pub(crate) fn add(&mut self, p: u16, v: u32) {
        *self.counts.entry((p, v)).or_insert(0) += 1;
        if v != 0 {
            if let Some(slot) = self.values.get_mut(v as usize) {
                slot.1 += 1;
            }
        }
        if let Some(t) = self.totals.get_mut(usize::from(p)) {
            *t += 1;
        }
    }

    pub(crate) fn release(&mut self, p: u16, v: u32) {
        if let Some(c) = self.counts.get_mut(&(p, v)) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.counts.remove(&(p, v));
            }
        }
        if let Some(t) = self.totals.get_mut(usize::from(p)) {
            *t = t.saturating_sub(1);
        }
        if v != 0 {
            if let Some(slot) = self.values.get_mut(v as usize) {
                slot.1 = slot.1.saturating_sub(1);
                if slot.1 == 0 {
                    let old = core::mem::take(&mut slot.0);
                    self.value_ids.remove(&old);
                    self.free_values.push(v);
                }
            }
        }
    }

    /// Distinct values currently interned (for tests and metrics).
    #[must_use]
    pub fn value_count(&self) -> usize {
        self.value_ids.len()
    }

    /// Calls in profile `name` with `value`; with `value` `None`, all calls in the profile
    /// (whatever their value).
    #[must_use]
    pub fn size(&self, name: &str, value: Option<&[u8]>) -> u64 {
        let Some(p) = self.find_profile(name) else {
            return 0;
        };
        match value {
            None => self.totals.get(usize::from(p)).copied().unwrap_or(0),
            Some(_) => self
                .find_value(value)
                .and_then(|v| self.counts.get(&(p, v)))
                .map_or(0, |&c| u64::from(c)),
        }
    }

    /// Every (profile, value, count) with a non-zero count.
    #[must_use]
    pub fn sizes(&self) -> Vec<(String, Option<Vec<u8>>, u64)> {
        let mut out: Vec<_> = self
            .counts
            .iter()
            .map(|(&(p, v), &c)| {
                (
                    self.names.get(usize::from(p)).cloned().unwrap_or_default(),
                    (v != 0).then(|| {
                        self.values
                            .get(v as usize)
                            .map(|b| b.0.to_vec())
                            .unwrap_or_default()
                    }),
                    u64::from(c),
                )
            })
            .collect();
        out.sort();
        out
    }

    pub(crate) fn describe(&self, p: u16, v: u32) -> (String, Option<String>) {
        (
            self.names.get(usize::from(p)).cloned().unwrap_or_default(),
            (v != 0).then(|| {
                self.values
                    .get(v as usize)
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                    .unwrap_or_default()
            }),
        )
    }

    pub(crate) fn matches(&self, p: u16, v: u32, name: &str, value: Option<&[u8]>) -> bool {
        if self.find_profile(name) != Some(p) {
            return false;
        }
        match value {
            None => true,
            Some(_) => self.find_value(value) == Some(v),
        }
    }
}
