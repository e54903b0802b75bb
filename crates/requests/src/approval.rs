//! The approval states of a request: `pending_approval` to `approved`
//! (which runs its task) or `denied`, one transition per request.

use super::event::{call_automate_event, evm, kind_of};
use super::model::{task_description, text, touch};
use super::{RequestError, RequestView, Requests};
use automate_engine::AttrValue;
use automate_vmdb::VmdbRef;

impl Requests {
    /// Approves a pending request: raises `request_approved` and
    /// `request_starting`, then runs its task. Refused (`conflict`) unless
    /// the request is `pending_approval`.
    pub fn approve(&self, id: i64, reason: Option<&str>) -> Result<RequestView, RequestError> {
        self.approve_as(id, "admin", reason)
    }

    pub(super) fn approve_as(
        &self,
        id: i64,
        approver: &str,
        reason: Option<&str>,
    ) -> Result<RequestView, RequestError> {
        {
            let request = self.transition(id, "approve", "approved")?;
            let store = self.store();
            store.update(&request, "stamped_by", AttrValue::str(approver))?;
            if let Some(r) = reason.map(str::trim).filter(|r| !r.is_empty()) {
                store.update(&request, "reason", AttrValue::str(r))?;
            }
            touch(store, &request)?;
            call_automate_event(&self.engine, &*self.schedule, &request, "request_approved")?;
            evm(&format!(
                "MIQ({}#approval_approved) Request: [{}] has all approvals approved, proceeding with execution",
                kind_of(&request).0,
                task_description(&request)
            ));
            self.create_request_tasks(&request)?;
        }
        self.get(id)
    }

    /// Denies a pending request: it is finished with status `Denied` and
    /// `request_denied` is raised. Refused (`conflict`) unless the request
    /// is `pending_approval`; the reason must not be empty.
    pub fn deny(&self, id: i64, reason: &str) -> Result<RequestView, RequestError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(RequestError::Invalid {
                field: "reason".into(),
                message: "a denial needs a reason".into(),
            });
        }
        {
            let request = self.transition(id, "deny", "denied")?;
            let store = self.store();
            store.update(&request, "request_state", AttrValue::str("finished"))?;
            store.update(&request, "status", AttrValue::str("Denied"))?;
            store.update(&request, "reason", AttrValue::str(reason))?;
            store.update(
                &request,
                "message",
                AttrValue::str(format!("Request denied: {reason}")),
            )?;
            store.update(&request, "stamped_by", AttrValue::str("admin"))?;
            touch(store, &request)?;
            call_automate_event(&self.engine, &*self.schedule, &request, "request_denied")?;
        }
        self.get(id)
    }

    /// Moves a `pending_approval` request to `to` (under the lock, so of
    /// two concurrent approvals or denials exactly one wins when the store
    /// commits each write at once; through a unit of work the caller must
    /// hold its own lock until the unit commits, as the API does); anything
    /// else is refused with the state it is in.
    fn transition(&self, id: i64, action: &str, to: &str) -> Result<VmdbRef, RequestError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let request = self.find(id)?;
        let state = text(self.store(), &request, "approval_state")?;
        if state != "pending_approval" {
            return Err(RequestError::WrongState {
                id,
                state,
                action: action.to_string(),
            });
        }
        self.store()
            .update(&request, "approval_state", AttrValue::str(to))?;
        Ok(request)
    }
}
