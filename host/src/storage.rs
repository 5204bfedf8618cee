//! Registrations, kept in SQLite: one foreign account per local account.

use crate::config::Secret;
use crate::xmpp::scram::{SaltedPassword, ScramHash};
use anyhow::{Context, Result};
use jid::BareJid;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;

/// A stored registration. The password stays inside the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// L, the local account.
    pub local: BareJid,
    /// F, the foreign account.
    pub foreign: BareJid,
    /// F's password.
    pub password: Secret,
}

/// A salted password to keep, with the registration it was derived for.
#[derive(Debug, Clone)]
pub struct KeptSalted {
    /// The registration as it was when the login derived it.
    pub registration: Registration,
    /// What was derived from it.
    pub salted: SaltedPassword,
}

const FORGET_SALTED: &str = "DELETE FROM scram_salted WHERE local_jid = ?1";
const FORGET_POSITIONS: &str = "DELETE FROM archive_position WHERE local_jid = ?1";

const UPSERT: &str =
    "INSERT INTO registrations (local_jid, foreign_jid, password) VALUES (?1, ?2, ?3)
     ON CONFLICT(local_jid) DO UPDATE SET foreign_jid = ?2, password = ?3";

/// The registration store.
pub struct Storage {
    conn: Mutex<Connection>,
}

impl Storage {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Storage> {
        let conn = Connection::open(path)
            .with_context(|| format!("failed to open database `{}`", path.display()))?;
        // WAL with full sync: a registration acknowledged to the user is on disk.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS policy_state (
                account TEXT NOT NULL,
                key     TEXT NOT NULL,
                value   BLOB NOT NULL,
                PRIMARY KEY (account, key)
            );
            CREATE TABLE IF NOT EXISTS registrations (
                local_jid   TEXT PRIMARY KEY NOT NULL,
                foreign_jid TEXT NOT NULL,
                password    TEXT NOT NULL,
                created_at  INTEGER NOT NULL DEFAULT (unixepoch())
            );
            -- SCRAM salted passwords of the registrations' foreign logins
            -- (xmpp::scram): as secret as the passwords beside them.
            CREATE TABLE IF NOT EXISTS scram_salted (
                local_jid  TEXT PRIMARY KEY NOT NULL,
                mechanism  TEXT NOT NULL,
                salt       BLOB NOT NULL,
                iterations INTEGER NOT NULL,
                salted     BLOB NOT NULL
            );
            -- Per foreign session: the id (XEP-0359) of the last message it
            -- received that the foreign server archived (XEP-0313).
            CREATE TABLE IF NOT EXISTS archive_position (
                local_jid TEXT NOT NULL,
                resource  TEXT NOT NULL,
                stanza_id TEXT NOT NULL,
                PRIMARY KEY (local_jid, resource)
            );",
        )
        .with_context(|| format!("failed to prepare database `{}`", path.display()))?;
        restrict_permissions(path);
        Ok(Storage {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores (or replaces) L's registration.
    pub fn put(&self, r: &Registration) -> Result<()> {
        self.put_all(std::slice::from_ref(r))
    }

    /// Stores many registrations in one transaction (an import, or a
    /// benchmark's thousands of accounts): all of them or none.
    pub fn put_all(&self, regs: &[Registration]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for r in regs {
            tx.execute(
                UPSERT,
                params![r.local.as_str(), r.foreign.as_str(), r.password.0],
            )
            .context("failed to store registration")?;
            tx.execute(FORGET_SALTED, params![r.local.as_str()])?;
            tx.execute(FORGET_POSITIONS, params![r.local.as_str()])?;
        }
        tx.commit().context("failed to store registrations")?;
        Ok(())
    }

    /// L's registration, if any.
    pub fn get(&self, local: &BareJid) -> Result<Option<Registration>> {
        self.conn()
            .query_row(
                "SELECT foreign_jid, password FROM registrations WHERE local_jid = ?1",
                params![local.as_str()],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
            )
            .optional()
            .context("failed to read registration")?
            .map(|(foreign, password)| {
                Ok(Registration {
                    local: local.clone(),
                    foreign: BareJid::new(&foreign).context("stored foreign JID is invalid")?,
                    password: Secret(password),
                })
            })
            .transpose()
    }

    /// Deletes L's registration; true when there was one.
    pub fn remove(&self, local: &BareJid) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "DELETE FROM registrations WHERE local_jid = ?1",
                params![local.as_str()],
            )
            .context("failed to delete registration")?;
        self.forget_state(local)?;
        Ok(n > 0)
    }

    /// Deletes L's registration's policy state and salted password as well
    /// (see [`Storage::remove`]).
    fn forget_state(&self, local: &BareJid) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM policy_state WHERE account = ?1",
            params![local.as_str()],
        )
        .context("failed to delete policy state")?;
        conn.execute(FORGET_SALTED, params![local.as_str()])
            .context("failed to delete the salted password")?;
        conn.execute(FORGET_POSITIONS, params![local.as_str()])
            .context("failed to delete the archive positions")?;
        Ok(())
    }

    /// Where foreign session A of L's account is in its archive: the id of
    /// the last archived message it delivered.
    pub fn archive_position(&self, local: &BareJid, resource: &str) -> Result<Option<String>> {
        self.conn()
            .query_row(
                "SELECT stanza_id FROM archive_position WHERE local_jid = ?1 AND resource = ?2",
                params![local.as_str(), resource],
                |row| row.get(0),
            )
            .optional()
            .context("failed to read an archive position")
    }

    /// Keeps archive positions, many per transaction: (L, A, stanza id).
    pub fn keep_archive_positions(&self, items: &[(BareJid, String, String)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (local, resource, id) in items {
            tx.execute(
                "INSERT INTO archive_position (local_jid, resource, stanza_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT (local_jid, resource) DO UPDATE SET stanza_id = excluded.stanza_id",
                params![local.as_str(), resource, id],
            )
            .context("failed to keep an archive position")?;
        }
        tx.commit().context("failed to keep archive positions")?;
        Ok(())
    }

    /// The SCRAM salted password kept for L's foreign logins, if any.
    pub fn salted_password(&self, local: &BareJid) -> Result<Option<SaltedPassword>> {
        let row = self
            .conn()
            .query_row(
                "SELECT mechanism, salt, iterations, salted FROM scram_salted WHERE local_jid = ?1",
                params![local.as_str()],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, Vec<u8>>(1)?,
                        row.get::<_, u32>(2)?,
                        row.get::<_, Vec<u8>>(3)?,
                    ))
                },
            )
            .optional()
            .context("failed to read the salted password")?;
        Ok(row.and_then(|(mechanism, salt, iterations, key)| {
            Some(SaltedPassword {
                hash: ScramHash::from_mechanism(&mechanism)?,
                salt,
                iterations,
                key,
            })
        }))
    }

    /// Keeps salted passwords, in one transaction. Each is kept only if the
    /// registration is still the one it was derived for (same foreign
    /// account, same password): one derived by a session of an account
    /// that has registered again since must not outlive it. Returns how
    /// many were kept.
    pub fn keep_salted_passwords(&self, items: &[KeptSalted]) -> Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut kept = 0;
        for k in items {
            kept += tx
                .execute(
                    "INSERT INTO scram_salted (local_jid, mechanism, salt, iterations, salted)
                     SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (
                         SELECT 1 FROM registrations
                         WHERE local_jid = ?1 AND foreign_jid = ?6 AND password = ?7)
                     ON CONFLICT(local_jid) DO UPDATE SET
                         mechanism = ?2, salt = ?3, iterations = ?4, salted = ?5",
                    params![
                        k.registration.local.as_str(),
                        k.salted.hash.mechanism(),
                        k.salted.salt,
                        k.salted.iterations,
                        k.salted.key,
                        k.registration.foreign.as_str(),
                        k.registration.password.0,
                    ],
                )
                .context("failed to keep a salted password")?;
        }
        tx.commit().context("failed to keep salted passwords")?;
        Ok(kept)
    }

    /// How many local accounts are registered (without reading them: the
    /// `stats` command is asked for it while 10,000 sessions run).
    pub fn count(&self) -> Result<usize> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM registrations", [], |row| row.get(0))
            .context("failed to count registrations")?;
        Ok(n as usize)
    }

    /// Every registered local account.
    pub fn locals(&self) -> Result<Vec<BareJid>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT local_jid FROM registrations ORDER BY local_jid")?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            let text = row?;
            match BareJid::new(&text) {
                Ok(jid) => out.push(jid),
                Err(e) => tracing::warn!(jid = %text, error = %e, "skipping invalid stored jid"),
            }
        }
        Ok(out)
    }
}

/// Policy state, per account (the WIT `store` interface; limits are checked
/// by the engine before a write).
impl crate::policy::StateBackend for Storage {
    fn get(&self, account: &str, key: &str) -> Option<Vec<u8>> {
        self.conn()
            .query_row(
                "SELECT value FROM policy_state WHERE account = ?1 AND key = ?2",
                params![account, key],
                |row| row.get(0),
            )
            .optional()
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading policy state failed");
                None
            })
    }

    fn set(&self, account: &str, key: &str, value: &[u8]) -> Result<(), String> {
        self.conn()
            .execute(
                "INSERT INTO policy_state (account, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT(account, key) DO UPDATE SET value = ?3",
                params![account, key, value],
            )
            .map(|_| ())
            .map_err(|e| format!("the store could not save: {e}"))
    }

    fn delete(&self, account: &str, key: &str) {
        if let Err(e) = self.conn().execute(
            "DELETE FROM policy_state WHERE account = ?1 AND key = ?2",
            params![account, key],
        ) {
            tracing::warn!(error = %e, "deleting policy state failed");
        }
    }

    fn usage(&self, account: &str) -> usize {
        self.conn()
            .query_row(
                "SELECT COALESCE(SUM(LENGTH(key) + LENGTH(value)), 0) FROM policy_state WHERE account = ?1",
                params![account],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .unwrap_or(0)
    }
}

/// The database holds foreign passwords: readable by the gateway's user only.
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(path = %path.display(), error = %e, "could not restrict database permissions");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> BareJid {
        BareJid::new(s).expect("valid jid")
    }

    #[test]
    fn registrations_survive_reopening_the_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite3");
        let r = Registration {
            local: jid("alice@l.test"),
            foreign: jid("me@f.test"),
            password: Secret("pw".into()),
        };
        Storage::open(&path).expect("open").put(&r).expect("put");
        let again = Storage::open(&path).expect("reopen");
        assert_eq!(again.get(&r.local).expect("get"), Some(r.clone()));
        assert_eq!(again.locals().expect("locals"), vec![r.local.clone()]);
        assert!(again.remove(&r.local).expect("remove"));
        assert_eq!(again.get(&r.local).expect("get"), None);
        assert!(!again.remove(&r.local).expect("remove twice"));
    }

    #[test]
    fn many_registrations_go_in_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Storage::open(&dir.path().join("db")).expect("open");
        let regs: Vec<Registration> = (0..500)
            .map(|i| Registration {
                local: jid(&format!("u{i}@l.test")),
                foreign: jid(&format!("f{i}@f.test")),
                password: Secret(format!("pw{i}")),
            })
            .collect();
        s.put_all(&regs).expect("put_all");
        assert_eq!(s.locals().expect("locals").len(), 500);
        assert_eq!(s.count().expect("count"), 500);
        assert_eq!(
            s.get(&regs[321].local).expect("get"),
            Some(regs[321].clone())
        );
    }

    #[test]
    fn registering_again_replaces_the_foreign_account() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Storage::open(&dir.path().join("db")).expect("open");
        let mut r = Registration {
            local: jid("a@l.test"),
            foreign: jid("x@f.test"),
            password: Secret("1".into()),
        };
        s.put(&r).expect("put");
        r.foreign = jid("y@f.test");
        s.put(&r).expect("put again");
        assert_eq!(
            s.get(&r.local).expect("get").map(|r| r.foreign),
            Some(jid("y@f.test"))
        );
    }

    fn salted(key: u8) -> SaltedPassword {
        SaltedPassword {
            hash: ScramHash::Sha1,
            salt: b"salt".to_vec(),
            iterations: 4096,
            key: vec![key; 20],
        }
    }

    #[test]
    fn salted_passwords_are_kept_only_for_the_registration_they_came_from() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let s = Storage::open(&path).expect("open");
        let r = Registration {
            local: jid("a@l.test"),
            foreign: jid("x@f.test"),
            password: Secret("1".into()),
        };
        s.put(&r).expect("put");
        let kept = |r: &Registration, key| KeptSalted {
            registration: r.clone(),
            salted: salted(key),
        };
        assert_eq!(s.keep_salted_passwords(&[kept(&r, 1)]).expect("keep"), 1);
        let again = Storage::open(&path).expect("reopen");
        assert_eq!(
            again.salted_password(&r.local).expect("read"),
            Some(salted(1))
        );

        // Registering again forgets it, and a late write from a session
        // of the old registration is refused.
        let new = Registration {
            password: Secret("2".into()),
            ..r.clone()
        };
        again.put(&new).expect("put again");
        assert_eq!(again.salted_password(&r.local).expect("read"), None);
        assert_eq!(
            again.keep_salted_passwords(&[kept(&r, 1)]).expect("keep"),
            0
        );
        assert_eq!(again.salted_password(&r.local).expect("read"), None);
        assert_eq!(
            again.keep_salted_passwords(&[kept(&new, 2)]).expect("keep"),
            1
        );
        assert_eq!(
            again.salted_password(&r.local).expect("read"),
            Some(salted(2))
        );

        // Removing the registration removes it.
        assert!(again.remove(&r.local).expect("remove"));
        assert_eq!(again.salted_password(&r.local).expect("read"), None);
        assert_eq!(
            again.keep_salted_passwords(&[kept(&new, 2)]).expect("keep"),
            0
        );
    }
}
