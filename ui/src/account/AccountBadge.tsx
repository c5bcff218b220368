// The signed-in account in the sidebar: avatar, name, email and sign-out.
import type { AccountUser } from './session';

export function AccountBadge({ user, onSignOut }: { user: AccountUser; onSignOut: () => void }) {
  const name = user.name ?? user.email ?? 'Signed in';
  return (
    <section className="account" aria-label="Account">
      {user.avatarUrl ? (
        <img className="avatar" src={user.avatarUrl} alt="" width={32} height={32} referrerPolicy="no-referrer" />
      ) : (
        <span className="avatar" aria-hidden="true">
          {name.slice(0, 1).toUpperCase()}
        </span>
      )}
      <div className="who">
        <div className="name">{name}</div>
        {user.email && user.email !== name && <div className="email">{user.email}</div>}
      </div>
      <button type="button" onClick={onSignOut}>
        Sign out
      </button>
    </section>
  );
}
