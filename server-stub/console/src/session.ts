/** The logged-in user, for every page (role decides which actions are offered). */
import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { User } from './api.js';

export interface SessionState {
  readonly user: User;
  /** Replaces the user after a change of their profile (e.g. the language). */
  readonly setUser: (user: User) => void;
}

export const SessionContext = createContext<SessionState | null>(null);

export function useSession(): SessionState {
  const session = useContext(SessionContext);
  if (!session) throw new Error('useSession outside of a logged-in shell');
  return session;
}
