// The review queue's keys and clicks. Plain JavaScript in the package: no CDN, works offline.
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const keysOn = document.body.dataset.keysOn === "true";
  const agentInput = document.getElementById("agent-input");
  const KEYS = {
    "1": ["category", "A"], "2": ["category", "B"], "3": ["category", "C"], "4": ["category", "D"],
    "q": ["severity", "low"], "w": ["severity", "medium"], "e": ["severity", "high"], "r": ["severity", "critical"],
    "z": ["sentiment", "negative"], "x": ["sentiment", "neutral"], "c": ["sentiment", "positive"],
  };
  const HEADS = ["category", "severity", "sentiment"];
  const HEAD_NAMES = { category: "类别", severity: "紧急程度", sentiment: "情绪" };
  // The API's error codes in the agents' words; any other error shows the server's message.
  const ERRORS = {
    csrf_failed: "页面已过期，请刷新后重试", unauthorized: "登录已过期，请重新登录", unknown_id: "找不到该工单",
    agent_required: "请先在右上角填写客服姓名", storage_unavailable: "存储暂不可用，请稍后重试", not_ready: "服务正在启动，请稍后重试",
  };

  if (agentInput) {
    agentInput.value = localStorage.getItem("triage_agent") || "";
    agentInput.addEventListener("change", () => localStorage.setItem("triage_agent", agentInput.value.trim()));
  }

  const items = () => Array.from(document.querySelectorAll("#queue .item"));
  const current = () => document.querySelector("#queue .item.current");

  function select(item) {
    if (!item) return;
    items().forEach((el) => el.classList.remove("current"));
    item.classList.add("current");
    item.scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    const all = items();
    const at = all.indexOf(current());
    select(all[Math.min(all.length - 1, Math.max(0, at + step))]);
  }

  function choose(item, head, code) {
    if (!item || item.classList.contains("done")) return;
    item.querySelectorAll(`.choice[data-head="${head}"]`).forEach((button) => {
      button.classList.toggle("chosen", button.dataset.code === code);
    });
  }

  function chosenLabels(item) {
    const labels = {};
    HEADS.forEach((head) => {
      const button = item.querySelector(`.choice.chosen[data-head="${head}"]`);
      labels[head] = button ? button.dataset.code : item.dataset["model" + head[0].toUpperCase() + head.slice(1)];
    });
    return labels;
  }

  function say(item, text, kind) {
    const status = item.querySelector(".status");
    status.textContent = text;
    status.className = "status " + (kind || "");
  }

  async function submit(item) {
    if (!item || item.classList.contains("done") || item.dataset.busy) return;
    const agent = keysOn ? null : (agentInput.value || "").trim();
    if (!keysOn && !agent) {
      say(item, "请先在右上角填写客服姓名", "error");
      agentInput.focus();
      return;
    }
    item.dataset.busy = "1";
    say(item, "提交中…");
    try {
      const body = { id: item.dataset.id, ...chosenLabels(item) };
      if (agent) body.agent = agent;
      const response = await fetch("/ui/api/review", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(() => ({}));
      if (!response.ok) {
        const error = answer.error || {};
        const message = ERRORS[error.code] || error.message || `HTTP ${response.status}`;
        say(item, "未保存：" + message, "error");
        if (response.status === 401) window.location.href = "/ui/login?next=" + encodeURIComponent(location.pathname + location.search);
        return;
      }
      item.classList.add("done");
      item.dataset.action = answer.action;
      say(item, answer.action === "confirmed" ? "已确认" : "已更正：" + answer.changed.map((head) => HEAD_NAMES[head] || head).join("、"), "saved");
      const left = items().filter((el) => !el.classList.contains("done")).length;
      const counter = document.getElementById("open-count");
      if (counter) counter.textContent = `本页待审 ${left} 条`;
      const all = items();
      const open = (el) => !el.classList.contains("done");
      const next = all.slice(all.indexOf(item) + 1).find(open) || all.find(open);
      if (next) select(next);
    } catch (error) {
      say(item, "未保存：网络错误，请重试", "error");
    } finally {
      delete item.dataset.busy;
    }
  }

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "SELECT" || target.tagName === "TEXTAREA")) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    if (KEYS[key]) { choose(current(), ...KEYS[key]); event.preventDefault(); }
    else if (key === "enter") { submit(current()); event.preventDefault(); }
    else if (key === "j") { move(1); event.preventDefault(); }
    else if (key === "k") { move(-1); event.preventDefault(); }
  });

  document.getElementById("queue").addEventListener("click", (event) => {
    const item = event.target.closest(".item");
    if (!item) return;
    select(item);
    const choice = event.target.closest(".choice");
    if (choice) choose(item, choice.dataset.head, choice.dataset.code);
    if (event.target.closest(".confirm")) submit(item);
  });
})();
