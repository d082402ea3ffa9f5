// The sign-in page's script: plain JavaScript, no framework, nothing from
// another host. It calls the API on the page's own origin with relative
// URLs, so the page works wherever the API is (a stage prefix included).
//
// Tokens: the access token lives only in this script's memory; the refresh
// token in sessionStorage, so that a reload of the tab stays signed in. Not
// in localStorage: that is shared by every tab of the site and kept on disk
// after the browser closes. Tabs sharing one refresh token would each rotate
// it, and the API takes a rotated-out token presented again as theft
// (refresh_token_reused) and ends the session; and a token on disk outlives
// the visit. sessionStorage belongs to one tab and ends with it. Any script
// running in the page could read either, which is why the page runs no
// script but this one (its Content-Security-Policy allows no other).
'use strict';

(() => {
  // This script is <site>/app/app.js; the API's routes are under <site>/.
  const SITE = new URL('../', document.currentScript.src);
  const REFRESH_KEY = 'phone-auth.refresh';
  // An invite code from a shared link (/?invite=CODE), kept until the person
  // has signed in and can enter it.
  const INVITE_KEY = 'phone-auth.invite';
  // Only the language chosen with the switch: a preference, not a secret.
  const LANG_KEY = 'phone-auth.lang';
  const REFERRALS_PAGE = 20;

  const TEXTS = {
    en: {
      title: 'Phone sign-in',
      brand: 'Phone sign-in',
      language: 'Language',
      'dev.label': 'Development mode',
      'dev.text': 'No SMS was sent. The code is:',
      'signin.title': 'Sign in',
      'signin.lead': 'Enter your phone number. We will send you a code by SMS; no password is needed.',
      'signin.phone': 'Phone number',
      'signin.phone_hint': 'Any spelling: +7 900 123-45-67, 8 (900) 123-45-67, 79001234567.',
      'signin.send': 'Send code',
      'signin.sent_to': 'Code sent to',
      'signin.code': 'Code from the SMS',
      'signin.verify': 'Sign in',
      'signin.resend': 'Send a new code',
      'signin.change': 'Change number',
      'signin.wait': '{label} ({time})',
      'profile.title': 'Your profile',
      'profile.phone': 'Phone',
      'profile.invited_by': 'Invited by',
      'profile.nobody': 'Nobody yet',
      'profile.deleted_referrer': 'A deleted account (code {code})',
      'profile.referrer': '{phone} (code {code})',
      'invite.title': 'Your invite code',
      'invite.lead': 'Give it to friends, or send them the link: they enter it after signing in.',
      'invite.copy': 'Copy',
      'invite.link': 'Invite link',
      'invite.copy_link': 'Copy link',
      'invite.share': 'Share…',
      'invite.copied': 'Invite code copied.',
      'invite.link_copied': 'Invite link copied.',
      'invite.copy_failed': 'Copying is not allowed here: the text is selected, press Ctrl+C (⌘C).',
      'referrer.title': 'Who invited you?',
      'referrer.label': 'Their invite code',
      'referrer.apply': 'Apply',
      'referrer.hint': 'Six letters or digits. It can be entered once.',
      'referrer.from_link': 'This code came with the link you opened. Press Apply to confirm it.',
      'referrer.done': 'You were invited by {who}.',
      'referrals.title': 'People you invited',
      'referrals.reload': 'Refresh',
      'referrals.empty': 'Nobody yet. Share your invite link.',
      'referrals.more': 'Show more',
      'referrals.joined': 'joined {date}',
      'sessions.title': 'Where you are signed in',
      'sessions.reload': 'Refresh',
      'sessions.current': 'This device',
      'sessions.revoke': 'Sign out',
      'sessions.revoke_label': 'Sign out of {device}, last active {date}',
      'sessions.meta': 'last active {date} · network {ip}',
      'sessions.unknown': 'Unknown device',
      'sessions.on': '{browser} on {os}',
      'account.title': 'Account',
      'account.sign_out': 'Sign out',
      'account.sign_out_all': 'Sign out everywhere',
      'account.delete': 'Delete account…',
      'account.delete_question': 'Delete your account? Your phone number, sessions and profile are erased; your invite code stops working. This cannot be undone.',
      'account.delete_yes': 'Delete my account',
      'account.delete_no': 'Keep it',
      'notice.signed_out': 'You have signed out.',
      'notice.signed_out_all': 'You have signed out on every device.',
      'notice.deleted': 'Your account has been deleted.',
      'notice.session_ended': 'Your session has ended. Please sign in again.',
      'error.phone_empty': 'Enter your phone number.',
      'error.code_empty': 'Enter the code from the SMS.',
      'error.invite_empty': 'Enter an invite code.',
      'error.network': 'The service cannot be reached. Check your connection and try again.',
      'error.unknown': 'Something went wrong. Please try again.',
    },
    ru: {
      title: 'Вход по телефону',
      brand: 'Вход по телефону',
      language: 'Язык',
      'dev.label': 'Режим разработки',
      'dev.text': 'SMS не отправлялось. Код:',
      'signin.title': 'Вход',
      'signin.lead': 'Введите номер телефона. Мы пришлём код в SMS — пароль не нужен.',
      'signin.phone': 'Номер телефона',
      'signin.phone_hint': 'В любой записи: +7 900 123-45-67, 8 (900) 123-45-67, 79001234567.',
      'signin.send': 'Получить код',
      'signin.sent_to': 'Код отправлен на',
      'signin.code': 'Код из SMS',
      'signin.verify': 'Войти',
      'signin.resend': 'Отправить код ещё раз',
      'signin.change': 'Другой номер',
      'signin.wait': '{label} ({time})',
      'profile.title': 'Ваш профиль',
      'profile.phone': 'Телефон',
      'profile.invited_by': 'Вас пригласил',
      'profile.nobody': 'Пока никто',
      'profile.deleted_referrer': 'Удалённый аккаунт (код {code})',
      'profile.referrer': '{phone} (код {code})',
      'invite.title': 'Ваш код приглашения',
      'invite.lead': 'Дайте его друзьям или отправьте ссылку: они введут код после входа.',
      'invite.copy': 'Копировать',
      'invite.link': 'Ссылка-приглашение',
      'invite.copy_link': 'Копировать ссылку',
      'invite.share': 'Поделиться…',
      'invite.copied': 'Код приглашения скопирован.',
      'invite.link_copied': 'Ссылка скопирована.',
      'invite.copy_failed': 'Копирование здесь запрещено: текст выделен, нажмите Ctrl+C (⌘C).',
      'referrer.title': 'Кто вас пригласил?',
      'referrer.label': 'Его код приглашения',
      'referrer.apply': 'Применить',
      'referrer.hint': 'Шесть букв или цифр. Ввести код можно один раз.',
      'referrer.from_link': 'Этот код пришёл со ссылкой, по которой вы зашли. Нажмите «Применить», чтобы подтвердить.',
      'referrer.done': 'Вас пригласил {who}.',
      'referrals.title': 'Приглашённые вами',
      'referrals.reload': 'Обновить',
      'referrals.empty': 'Пока никого. Поделитесь ссылкой-приглашением.',
      'referrals.more': 'Показать ещё',
      'referrals.joined': 'с {date}',
      'sessions.title': 'Где выполнен вход',
      'sessions.reload': 'Обновить',
      'sessions.current': 'Это устройство',
      'sessions.revoke': 'Выйти',
      'sessions.revoke_label': 'Выйти на устройстве {device}, последняя активность {date}',
      'sessions.meta': 'активность {date} · сеть {ip}',
      'sessions.unknown': 'Неизвестное устройство',
      'sessions.on': '{browser}, {os}',
      'account.title': 'Аккаунт',
      'account.sign_out': 'Выйти',
      'account.sign_out_all': 'Выйти на всех устройствах',
      'account.delete': 'Удалить аккаунт…',
      'account.delete_question': 'Удалить аккаунт? Номер телефона, сеансы и профиль будут стёрты, ваш код приглашения перестанет действовать. Отменить это нельзя.',
      'account.delete_yes': 'Удалить мой аккаунт',
      'account.delete_no': 'Не удалять',
      'notice.signed_out': 'Вы вышли.',
      'notice.signed_out_all': 'Вы вышли на всех устройствах.',
      'notice.deleted': 'Ваш аккаунт удалён.',
      'notice.session_ended': 'Сеанс завершён. Войдите снова.',
      'error.phone_empty': 'Введите номер телефона.',
      'error.code_empty': 'Введите код из SMS.',
      'error.invite_empty': 'Введите код приглашения.',
      'error.network': 'Сервис недоступен. Проверьте подключение и попробуйте снова.',
      'error.unknown': 'Что-то пошло не так. Попробуйте ещё раз.',
    },
  };

  // The API's messages are English. In Russian, each refusal the page can
  // meet is said in Russian by its code; an unknown code shows the API's
  // own message.
  const RU_ERRORS = {
    invalid_json: 'Некорректный запрос.',
    invalid_request: 'Некорректный запрос.',
    invalid_phone: 'Это не похоже на номер телефона. Проверьте цифры и код страны.',
    phone_region_not_allowed: 'Номера этой страны не поддерживаются.',
    phone_type_not_allowed: 'На этот номер нельзя отправить SMS: нужен мобильный номер.',
    invalid_code_format: 'Код — это цифры из SMS.',
    invalid_invite_code_format: 'Код приглашения — шесть букв или цифр.',
    unsupported_lang: 'Неподдерживаемый язык.',
    code_invalid: 'Неверный или уже использованный код. Запросите новый.',
    code_expired: 'Срок действия кода истёк. Запросите новый.',
    too_many_attempts: 'Слишком много неверных попыток для этого кода. Запросите новый.',
    resend_too_soon: 'Новый код можно запросить чуть позже.',
    too_many_codes: 'На этот номер отправлено слишком много кодов. Попробуйте позже.',
    phone_locked: 'Слишком много неверных кодов: вход для этого номера временно заблокирован.',
    too_many_requests_from_ip: 'Из вашей сети запрошено слишком много кодов. Попробуйте позже.',
    region_budget_exhausted: 'Сегодня в эту страну больше нельзя отправлять SMS. Попробуйте завтра.',
    sms_budget_exhausted: 'Сейчас коды не отправляются. Попробуйте позже.',
    own_invite_code: 'Нельзя ввести собственный код приглашения.',
    invite_code_not_found: 'Такого кода приглашения нет.',
    already_referred: 'Вы уже указали, кто вас пригласил. Изменить это нельзя.',
    referral_cycle: 'Этот код принадлежит тому, кого пригласили вы (напрямую или через других): приглашения не могут идти по кругу.',
    referral_chain_too_deep: 'Цепочка приглашений над этим кодом слишком длинная: присоединиться к ней нельзя.',
    session_not_found: 'Такого сеанса нет.',
    user_not_found: 'Аккаунт не найден.',
    payload_too_large: 'Слишком большой запрос.',
    service_unavailable: 'Сервис временно недоступен. Попробуйте ещё раз.',
  };

  const $ = (id) => document.getElementById(id);
  const el = {
    notice: $('notice'),
    devBanner: $('dev-banner'),
    devCode: $('dev-code'),
    signin: $('signin'),
    phoneForm: $('phone-form'),
    phone: $('phone'),
    phoneError: $('phone-error'),
    sendCode: $('send-code'),
    codeForm: $('code-form'),
    sentTo: $('sent-to'),
    code: $('code'),
    codeError: $('code-error'),
    verify: $('verify-code'),
    resend: $('resend-code'),
    changePhone: $('change-phone'),
    account: $('account'),
    profileTitle: $('profile-title'),
    myPhone: $('my-phone'),
    invitedBy: $('invited-by'),
    inviteCode: $('invite-code'),
    copyCode: $('copy-code'),
    shareLink: $('share-link'),
    copyLink: $('copy-link'),
    share: $('share'),
    copyStatus: $('copy-status'),
    referrerForm: $('referrer-form'),
    inviteInput: $('invite-input'),
    inviteHint: $('invite-hint'),
    inviteError: $('invite-error'),
    applyInvite: $('apply-invite'),
    referrerDone: $('referrer-done'),
    referrals: $('referrals'),
    referralsCount: $('referrals-count'),
    referralsEmpty: $('referrals-empty'),
    referralsError: $('referrals-error'),
    moreReferrals: $('more-referrals'),
    reloadReferrals: $('reload-referrals'),
    sessions: $('sessions'),
    sessionsError: $('sessions-error'),
    reloadSessions: $('reload-sessions'),
    signOut: $('sign-out'),
    signOutAll: $('sign-out-all'),
    deleteAccount: $('delete-account'),
    deleteConfirm: $('delete-confirm'),
    deleteYes: $('delete-yes'),
    deleteNo: $('delete-no'),
    accountError: $('account-error'),
  };

  // ------------------------------------------------------------ language

  let lang = 'en';

  function t(key, values) {
    const text = TEXTS[lang][key] ?? TEXTS.en[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (_, name) => (values && name in values ? values[name] : ''));
  }

  function browserLanguage() {
    const saved = localStorage.getItem(LANG_KEY);
    if (saved in TEXTS) return saved;
    const wanted = navigator.languages?.length ? navigator.languages : [navigator.language || 'en'];
    for (const tag of wanted) {
      const base = String(tag).toLowerCase().split('-')[0];
      if (base in TEXTS) return base;
    }
    return 'en';
  }

  function setLanguage(next) {
    lang = next;
    document.documentElement.lang = next;
    document.title = t('title');
    for (const node of document.querySelectorAll('[data-t]')) node.textContent = t(node.dataset.t);
    for (const node of document.querySelectorAll('[data-t-aria-label]')) {
      node.setAttribute('aria-label', t(node.dataset.tAriaLabel));
    }
    for (const button of document.querySelectorAll('.lang-button')) {
      button.setAttribute('aria-pressed', String(button.dataset.lang === next));
    }
    // What was drawn from data is drawn again in the new language.
    renderCooldown();
    renderProfile();
    renderReferrals();
    renderSessions();
    for (const node of document.querySelectorAll('.error')) {
      if (node.shownError) node.textContent = messageOf(node.shownError);
    }
    for (const node of [el.notice, el.copyStatus]) {
      if (node.shownKey) node.textContent = t(node.shownKey);
    }
  }

  // ------------------------------------------------------------ the API

  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message || '');
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  // Thrown where a session ended under a request: the page is back at sign-in already.
  class SessionEnded extends Error {}

  function messageOf(error) {
    if (error.localKey) return t(error.localKey);
    if (error.code === 'network') return t('error.network');
    if (lang === 'ru' && RU_ERRORS[error.code]) return RU_ERRORS[error.code];
    return error.message || t('error.unknown');
  }

  async function api(method, path, { body, bearer } = {}) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    let response;
    try {
      response = await fetch(new URL(path, SITE), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch {
      throw new ApiError(0, 'network');
    }
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const retryAfter = Number(response.headers.get('Retry-After')) || 0;
      // API Gateway's own 401 has a message and no code.
      throw new ApiError(response.status, data?.code, data?.message, retryAfter);
    }
    return data;
  }

  // ------------------------------------------------------------ tokens

  let access = null;
  let accessExpiresAt = 0;
  let refreshTimer = 0;
  let refreshing = null;

  function expiryOf(jwt) {
    try {
      const payload = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(payload)).exp * 1000;
    } catch {
      return Date.now() + 60_000;
    }
  }

  function keepTokens(pair) {
    access = pair.access;
    accessExpiresAt = expiryOf(pair.access);
    sessionStorage.setItem(REFRESH_KEY, pair.refresh);
    // Refreshed well before it expires (at 80% of its life), so a request
    // rarely meets an expired token.
    clearTimeout(refreshTimer);
    const delay = Math.max(1000, (accessExpiresAt - Date.now()) * 0.8);
    refreshTimer = setTimeout(() => {
      refreshSession().catch(() => {});
    }, delay);
  }

  function forgetTokens() {
    access = null;
    accessExpiresAt = 0;
    clearTimeout(refreshTimer);
    sessionStorage.removeItem(REFRESH_KEY);
  }

  // One refresh at a time: parallel requests wait for the same one (a
  // second refresh with the same token would count as its reuse).
  function refreshSession() {
    refreshing ??= (async () => {
      try {
        const refresh = sessionStorage.getItem(REFRESH_KEY);
        if (!refresh) throw new ApiError(401, 'refresh_token_invalid');
        keepTokens(await api('POST', 'users/auth/refresh/', { body: { refresh } }));
      } catch (error) {
        if (error.status === 401) {
          endSession('session_ended');
          throw new SessionEnded();
        }
        throw error;
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  // A request with the access token: refreshed first when it is about to
  // expire, and once more on a 401; a second 401 ends the session.
  async function authed(method, path, body) {
    if (!access || Date.now() > accessExpiresAt - 10_000) await refreshSession();
    try {
      return await api(method, path, { body, bearer: access });
    } catch (error) {
      if (error.status !== 401) throw error;
    }
    await refreshSession();
    try {
      return await api(method, path, { body, bearer: access });
    } catch (error) {
      if (error.status === 401) {
        endSession('session_ended');
        throw new SessionEnded();
      }
      throw error;
    }
  }

  // ------------------------------------------------------------ showing things

  function showError(node, error, input) {
    if (error instanceof SessionEnded) return;
    node.shownError = error;
    node.textContent = messageOf(error);
    if (input) input.setAttribute('aria-invalid', 'true');
  }

  function clearError(node, input) {
    node.shownError = null;
    node.textContent = '';
    if (input) input.removeAttribute('aria-invalid');
  }

  // A text of the page's own, kept by key so a change of language redraws it.
  function say(node, key) {
    node.shownKey = key;
    node.textContent = key ? t(key) : '';
  }

  function showNotice(key) {
    say(el.notice, key);
    el.notice.hidden = !key;
  }

  async function busy(button, work) {
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    try {
      return await work();
    } finally {
      button.removeAttribute('aria-busy');
      button.disabled = false;
      renderCooldown();
    }
  }

  function formatDate(seconds) {
    const locale = lang === 'ru' ? 'ru-RU' : 'en-GB';
    return new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short' }).format(
      new Date(seconds * 1000),
    );
  }

  // ------------------------------------------------------------ signing in

  let pendingPhone = null; // E.164, as get_code answered
  let cooldownUntil = 0;
  let cooldownTimer = 0;

  // The send buttons wait out the API's Retry-After, counting down. It is
  // the phone's wait: another phone, or a sign-in, ends it.
  function stopCooldown() {
    cooldownUntil = 0;
    renderCooldown();
  }

  function startCooldown(seconds) {
    cooldownUntil = Date.now() + seconds * 1000;
    clearInterval(cooldownTimer);
    cooldownTimer = setInterval(renderCooldown, 1000);
    renderCooldown();
  }

  function renderCooldown() {
    const left = Math.ceil((cooldownUntil - Date.now()) / 1000);
    const waiting = left > 0;
    if (!waiting) clearInterval(cooldownTimer);
    const time = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
    for (const [button, key] of [
      [el.sendCode, 'signin.send'],
      [el.resend, 'signin.resend'],
    ]) {
      if (button.getAttribute('aria-busy')) continue;
      button.disabled = waiting;
      button.textContent = waiting ? t('signin.wait', { label: t(key), time }) : t(key);
    }
  }

  function showDevCode(code) {
    // Only `make dev` builds answer with the code (README "dev mode").
    el.devBanner.hidden = !code;
    el.devCode.textContent = code || '';
  }

  function showSignIn() {
    el.account.hidden = true;
    el.signin.hidden = false;
    el.phoneForm.hidden = false;
    el.codeForm.hidden = true;
    el.deleteConfirm.hidden = true;
    showDevCode(null);
  }

  async function requestCode(phone, errorNode, input) {
    clearError(errorNode, input);
    try {
      const answer = await api('POST', 'users/auth/get_code/', { body: { phone, lang } });
      pendingPhone = answer.phone;
      showDevCode(answer.sms_code);
      return true;
    } catch (error) {
      showError(errorNode, error, input);
      if (error.retryAfter) startCooldown(error.retryAfter);
      return false;
    }
  }

  el.phoneForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const phone = el.phone.value.trim();
    if (!phone) {
      showError(el.phoneError, { localKey: 'error.phone_empty' }, el.phone);
      el.phone.focus();
      return;
    }
    showNotice(null);
    const sent = await busy(el.sendCode, () => requestCode(phone, el.phoneError, el.phone));
    if (!sent) return;
    el.sentTo.textContent = pendingPhone;
    el.phoneForm.hidden = true;
    el.codeForm.hidden = false;
    el.code.value = '';
    clearError(el.codeError, el.code);
    el.code.focus();
  });

  el.resend.addEventListener('click', async () => {
    await busy(el.resend, () => requestCode(pendingPhone, el.codeError, null));
    el.code.focus();
  });

  el.phone.addEventListener('input', stopCooldown);

  el.changePhone.addEventListener('click', () => {
    stopCooldown();
    showSignIn();
    clearError(el.phoneError, el.phone);
    el.phone.focus();
  });

  el.codeForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const code = el.code.value.replace(/\s/g, '');
    if (!code) {
      showError(el.codeError, { localKey: 'error.code_empty' }, el.code);
      el.code.focus();
      return;
    }
    clearError(el.codeError, el.code);
    await busy(el.verify, async () => {
      try {
        keepTokens(
          await api('POST', 'users/auth/send_code/', { body: { phone: pendingPhone, password: code } }),
        );
      } catch (error) {
        showError(el.codeError, error, el.code);
        el.code.focus();
        return;
      }
      showDevCode(null);
      stopCooldown();
      el.phone.value = '';
      await showAccount();
    });
  });

  // ------------------------------------------------------------ the account

  let profile = null;
  let referrals = [];
  let nextCursor = null;
  let sessions = [];

  async function showAccount() {
    el.signin.hidden = true;
    el.account.hidden = false;
    el.profileTitle.focus();
    await Promise.all([loadProfile(), loadReferrals(true), loadSessions()]);
  }

  async function loadProfile() {
    try {
      profile = await authed('GET', 'users/retrieve/');
      clearError(el.accountError);
    } catch (error) {
      showError(el.accountError, error);
    }
    renderProfile();
    renderReferrals();
  }

  function shareLink() {
    const link = new URL(SITE);
    link.search = new URLSearchParams({ invite: profile.invite_code }).toString();
    return link.href;
  }

  function referrerText() {
    if (profile.invited_by_phone) {
      return t('profile.referrer', { phone: profile.invited_by_phone, code: profile.invite_code_referer });
    }
    // The referrer deleted their account: their code stays, their phone is gone.
    return t('profile.deleted_referrer', { code: profile.invite_code_referer });
  }

  function renderProfile() {
    if (!profile) return;
    el.myPhone.textContent = profile.phone;
    el.inviteCode.textContent = profile.invite_code;
    el.shareLink.value = shareLink();
    el.share.hidden = typeof navigator.share !== 'function';
    const referred = Boolean(profile.invite_code_referer);
    el.invitedBy.textContent = referred ? referrerText() : t('profile.nobody');
    el.referrerForm.hidden = referred;
    el.referrerDone.hidden = !referred;
    el.referrerDone.textContent = referred ? t('referrer.done', { who: referrerText() }) : '';
    const fromLink = sessionStorage.getItem(INVITE_KEY);
    if (!referred && fromLink && fromLink !== profile.invite_code && !el.inviteInput.value) {
      el.inviteInput.value = fromLink;
    }
    const prefilled = !referred && fromLink && el.inviteInput.value === fromLink;
    el.inviteHint.textContent = t(prefilled ? 'referrer.from_link' : 'referrer.hint');
  }

  el.referrerForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const inviteCode = el.inviteInput.value.trim();
    if (!inviteCode) {
      showError(el.inviteError, { localKey: 'error.invite_empty' }, el.inviteInput);
      el.inviteInput.focus();
      return;
    }
    clearError(el.inviteError, el.inviteInput);
    await busy(el.applyInvite, async () => {
      try {
        await authed('POST', 'users/set_referrer/', { invite_code: inviteCode });
      } catch (error) {
        showError(el.inviteError, error, el.inviteInput);
        if (error.code === 'already_referred') await loadProfile();
        el.inviteInput.focus();
        return;
      }
      sessionStorage.removeItem(INVITE_KEY);
      el.inviteInput.value = '';
      await loadProfile();
      el.referrerDone.focus();
    });
  });

  async function copy(text, okKey, selectable) {
    try {
      await navigator.clipboard.writeText(text);
      say(el.copyStatus, okKey);
    } catch {
      // No clipboard (permission, an insecure origin): the text is selected
      // for the person to copy themselves.
      if (selectable instanceof HTMLInputElement) {
        selectable.select();
      } else {
        window.getSelection().selectAllChildren(selectable);
      }
      say(el.copyStatus, 'invite.copy_failed');
    }
  }

  el.copyCode.addEventListener('click', () => copy(profile.invite_code, 'invite.copied', el.inviteCode));
  el.copyLink.addEventListener('click', () => copy(el.shareLink.value, 'invite.link_copied', el.shareLink));
  el.share.addEventListener('click', () => {
    navigator.share({ title: t('title'), url: el.shareLink.value }).catch(() => {});
  });

  async function loadReferrals(fromStart) {
    const query = new URLSearchParams({ limit: String(REFERRALS_PAGE) });
    if (!fromStart && nextCursor) query.set('cursor', nextCursor);
    try {
      const page = await authed('GET', `users/referrals/?${query}`);
      referrals = fromStart ? page.referrals : referrals.concat(page.referrals);
      nextCursor = page.next_cursor;
      clearError(el.referralsError);
    } catch (error) {
      showError(el.referralsError, error);
    }
    renderReferrals();
  }

  function renderReferrals() {
    el.referrals.replaceChildren(
      ...referrals.map((referral) => {
        const item = document.createElement('li');
        const phone = document.createElement('span');
        phone.className = 'main';
        phone.textContent = referral.phone;
        const joined = document.createElement('span');
        joined.className = 'meta';
        joined.textContent = t('referrals.joined', { date: formatDate(referral.joined_at) });
        item.append(phone, joined);
        return item;
      }),
    );
    // The profile's count trails new referrals by seconds (README); the list is read directly.
    const count = Math.max(profile?.referrals_count ?? 0, referrals.length);
    el.referralsCount.textContent = count ? String(count) : '';
    el.referralsEmpty.hidden = referrals.length > 0;
    el.moreReferrals.hidden = !nextCursor;
  }

  el.moreReferrals.addEventListener('click', () => busy(el.moreReferrals, () => loadReferrals(false)));
  el.reloadReferrals.addEventListener('click', () =>
    busy(el.reloadReferrals, () => Promise.all([loadProfile(), loadReferrals(true)])),
  );

  function deviceOf(userAgent) {
    if (!userAgent) return t('sessions.unknown');
    const browsers = [
      ['Edg/', 'Edge'],
      ['OPR/', 'Opera'],
      ['YaBrowser/', 'Yandex Browser'],
      ['Firefox/', 'Firefox'],
      ['HeadlessChrome/', 'Headless Chrome'],
      ['Chrome/', 'Chrome'],
      ['Safari/', 'Safari'],
      ['curl/', 'curl'],
    ];
    const systems = [
      ['Android', 'Android'],
      ['iPhone', 'iPhone'],
      ['iPad', 'iPad'],
      ['Windows', 'Windows'],
      ['Mac OS', 'macOS'],
      ['CrOS', 'ChromeOS'],
      ['Linux', 'Linux'],
    ];
    const browser = browsers.find(([mark]) => userAgent.includes(mark))?.[1];
    const os = systems.find(([mark]) => userAgent.includes(mark))?.[1];
    if (browser && os) return t('sessions.on', { browser, os });
    return browser || os || userAgent.slice(0, 60);
  }

  async function loadSessions() {
    try {
      sessions = (await authed('GET', 'users/sessions/')).sessions;
      clearError(el.sessionsError);
    } catch (error) {
      showError(el.sessionsError, error);
    }
    renderSessions();
  }

  function renderSessions() {
    el.sessions.replaceChildren(
      ...sessions.map((session) => {
        const item = document.createElement('li');
        const text = document.createElement('div');
        const device = document.createElement('div');
        device.className = 'main';
        device.textContent = deviceOf(session.user_agent);
        device.title = session.user_agent || '';
        const meta = document.createElement('div');
        meta.className = 'meta';
        const date = formatDate(session.last_used_at);
        meta.textContent = t('sessions.meta', { date, ip: session.ip || '—' });
        text.append(device, meta);
        item.append(text);
        if (session.current) {
          const current = document.createElement('span');
          current.className = 'current';
          current.textContent = t('sessions.current');
          item.append(current);
        } else {
          const revoke = document.createElement('button');
          revoke.type = 'button';
          revoke.className = 'secondary';
          revoke.textContent = t('sessions.revoke');
          revoke.setAttribute('aria-label', t('sessions.revoke_label', { device: device.textContent, date }));
          revoke.addEventListener('click', () =>
            busy(revoke, async () => {
              try {
                await authed('DELETE', `users/sessions/${encodeURIComponent(session.id)}/`);
              } catch (error) {
                showError(el.sessionsError, error);
                return;
              }
              await loadSessions();
            }),
          );
          item.append(revoke);
        }
        return item;
      }),
    );
  }

  el.reloadSessions.addEventListener('click', () => busy(el.reloadSessions, loadSessions));

  // Back to sign-in, with everything of the session forgotten.
  function endSession(reason) {
    forgetTokens();
    profile = null;
    referrals = [];
    nextCursor = null;
    sessions = [];
    el.inviteInput.value = '';
    for (const node of document.querySelectorAll('.error')) clearError(node);
    say(el.copyStatus, null);
    showSignIn();
    showNotice(`notice.${reason}`);
    el.notice.focus();
  }

  el.signOut.addEventListener('click', () =>
    busy(el.signOut, async () => {
      try {
        // Any token of the session ends it; no access token needed.
        await api('POST', 'users/auth/logout/', { body: { refresh: sessionStorage.getItem(REFRESH_KEY) } });
      } catch (error) {
        showError(el.accountError, error);
        return;
      }
      endSession('signed_out');
    }),
  );

  el.signOutAll.addEventListener('click', () =>
    busy(el.signOutAll, async () => {
      try {
        await authed('POST', 'users/auth/logout_all/');
      } catch (error) {
        showError(el.accountError, error);
        return;
      }
      endSession('signed_out_all');
    }),
  );

  el.deleteAccount.addEventListener('click', () => {
    el.deleteConfirm.hidden = false;
    el.deleteNo.focus();
  });
  el.deleteNo.addEventListener('click', () => {
    el.deleteConfirm.hidden = true;
    el.deleteAccount.focus();
  });
  el.deleteYes.addEventListener('click', () =>
    busy(el.deleteYes, async () => {
      try {
        await authed('DELETE', 'users/me/');
      } catch (error) {
        showError(el.accountError, error);
        return;
      }
      endSession('deleted');
    }),
  );

  // ------------------------------------------------------------ start

  for (const button of document.querySelectorAll('.lang-button')) {
    button.addEventListener('click', () => {
      localStorage.setItem(LANG_KEY, button.dataset.lang);
      setLanguage(button.dataset.lang);
    });
  }

  // A shared link's code is kept for after sign-in, and taken out of the
  // address bar so a reload or a bookmark does not carry it on.
  const params = new URLSearchParams(location.search);
  if (params.get('invite')) {
    sessionStorage.setItem(INVITE_KEY, params.get('invite').trim());
    params.delete('invite');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + (rest ? `?${rest}` : '') + location.hash);
  }

  setLanguage(browserLanguage());
  if (sessionStorage.getItem(REFRESH_KEY)) {
    el.signin.hidden = true;
    // A reload: the access token was only in memory; the refresh token brings it back.
    refreshSession()
      .then(showAccount)
      .catch((error) => {
        if (error instanceof SessionEnded) return;
        showSignIn();
        showError(el.phoneError, error);
      });
  } else {
    showSignIn();
  }
})();
