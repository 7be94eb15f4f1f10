import { useState } from 'preact/hooks';
import { type ConsoleSession, type Language, login } from '../api.js';
import { errorText } from '../components/error-text.js';
import { LanguageSwitch } from '../components/language-switch.js';
import { useT } from '../i18n.js';

/** The login form; `notice` explains why it is shown (session expired, logged out). */
export default function LoginPage(props: {
  notice: 'expired' | 'loggedOut' | null;
  onLogin: (session: ConsoleSession) => void;
  onLanguage: (language: Language) => void;
}) {
  const t = useT('login');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      props.onLogin(await login(username, password));
    } catch (err) {
      setError(errorText(t, err));
      setBusy(false);
    }
  };

  return (
    <div class="login-page">
      <form class="login-box" onSubmit={submit}>
        <div class="login-head">
          <h1>{t('title')}</h1>
          <LanguageSwitch onChange={props.onLanguage} />
        </div>
        {props.notice ? (
          <p class="notice" role="status" data-testid="login-notice">
            {t(`notice.${props.notice}`)}
          </p>
        ) : null}
        <label>
          {t('username')}
          <input name="username" autocomplete="username" required value={username} onInput={(e) => setUsername(e.currentTarget.value)} />
        </label>
        <label>
          {t('password')}
          <input
            name="password"
            type="password"
            autocomplete="current-password"
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        {error ? (
          <p class="error" role="alert" data-testid="login-error">
            {error}
          </p>
        ) : null}
        <button type="submit" class="primary" disabled={busy}>
          {t('submit')}
        </button>
      </form>
    </div>
  );
}
