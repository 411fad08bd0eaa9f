// Sign in with an API key: the server answers with a session cookie (HttpOnly, SameSite=Strict).
(function () {
  "use strict";
  const form = document.getElementById("login");
  const status = document.getElementById("login-status");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.textContent = "登录中…";
    const response = await fetch("/ui/api/login", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ agent: form.agent.value.trim(), key: form.key.value }),
    });
    if (response.ok) { window.location.href = form.dataset.next; return; }
    const answer = await response.json().catch(() => ({}));
    const error = answer.error || {};
    const reason = { unauthorized: "API 密钥不对", csrf_failed: "页面已过期，请刷新后重试" }[error.code];
    status.textContent = "登录失败：" + (reason || error.message || `HTTP ${response.status}`);
    status.className = "status error";
  });
})();
