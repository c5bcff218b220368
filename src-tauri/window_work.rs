//! The work the window started, by user: its event subscriptions, and in Supabase mode the
//! users who have been signed in to it. Whenever the signed-in user changes (sign-out, the
//! session ended, another account signed in), the work of every other user who used the
//! window stops: their running sessions are stopped and their sandboxes released (chats and
//! workspaces stay, to be continued after signing in again) and their event streams end.
//! Reconciling against the current user (not tracking one "previous" user) means a quick
//! A→B→A switch, or work a command registered just after a sign-out, is never left running.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use lucid_engine::auth::session_keeper::SessionKeeper;
use lucid_engine::Engine;

type SubscriptionMap = HashMap<u64, (String, tokio::task::AbortHandle)>;

/// See the module docs.
pub struct WindowWork {
    engine: Arc<Engine>,
    subscriptions: Mutex<SubscriptionMap>,
    /// Everyone who has been signed in to the window (Supabase mode).
    users: Mutex<HashSet<String>>,
    /// One reconciliation at a time.
    reconciling: tokio::sync::Mutex<()>,
}

impl WindowWork {
    pub fn new(engine: Arc<Engine>) -> Arc<Self> {
        Arc::new(Self {
            engine,
            subscriptions: Mutex::new(HashMap::new()),
            users: Mutex::new(HashSet::new()),
            reconciling: tokio::sync::Mutex::new(()),
        })
    }

    /// Reconciles after every change of the keeper's user, until the keeper is gone.
    pub fn follow(self: &Arc<Self>, keeper: &SessionKeeper) {
        let mut changes = keeper.subscribe();
        let work = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let current = changes.borrow_and_update().as_ref().map(|u| u.id.clone());
                work.reconcile(current.as_deref()).await;
                if changes.changed().await.is_err() {
                    break;
                }
            }
        });
    }

    /// Stops the work of everyone who used the window but `current`.
    pub async fn reconcile(&self, current: Option<&str>) {
        let _one = self.reconciling.lock().await;
        let others: Vec<String> = {
            let mut users = lock(&self.users);
            if let Some(current) = current {
                users.insert(current.to_string());
            }
            users
                .iter()
                .filter(|u| Some(u.as_str()) != current)
                .cloned()
                .collect()
        };
        lock(&self.subscriptions).retain(|_, (owner, task)| {
            let keep = Some(owner.as_str()) == current;
            if !keep {
                task.abort();
            }
            keep
        });
        for user in others {
            let stopped = self.engine.sessions().shutdown_user(&user).await;
            if stopped > 0 {
                tracing::info!(user = %user, stopped, "no longer signed in: the user's sessions were stopped");
            }
        }
    }

    /// Remembers a subscription task of `user_id`'s under `id`.
    pub fn add_subscription(&self, id: u64, user_id: &str, task: tokio::task::AbortHandle) {
        let mut subs = lock(&self.subscriptions);
        subs.retain(|_, (_, t)| !t.is_finished());
        subs.insert(id, (user_id.to_string(), task));
    }

    pub fn end_subscription(&self, id: u64) -> bool {
        match lock(&self.subscriptions).remove(&id) {
            Some((_, task)) => {
                task.abort();
                true
            }
            None => false,
        }
    }

    /// Number of subscriptions still running.
    pub fn live_subscriptions(&self) -> usize {
        let mut subs = lock(&self.subscriptions);
        subs.retain(|_, (_, t)| !t.is_finished());
        subs.len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
