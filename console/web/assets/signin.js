// Sign-in: a token becomes a session cookie; the token itself is not kept anywhere.
import { api, setCsrf } from "./api.js";
import { h, mount } from "./dom.js";

export function signIn(root, next, onDone) {
  const error = h("p", { class: "error", role: "alert", id: "signin-error" });
  const input = h("input", {
    type: "password", name: "token", id: "token", autocomplete: "off", required: true,
    placeholder: "cdn_…", "aria-label": "API token",
  });
  const form = h("form", { class: "signin", onsubmit: async (e) => {
    e.preventDefault();
    mount(error);
    try {
      const who = await api("/api/v1/session", { method: "POST", body: { token: input.value.trim() } });
      input.value = "";
      setCsrf(who.csrf);
      onDone(who, next);
    } catch (err) {
      mount(error, err.status === 401 ? "That token is unknown or revoked." : err.message);
    }
  } },
    h("h1", {}, "Cordon"),
    h("p", { class: "muted" }, "Sign in with your API token (cordon token create)."),
    h("label", { for: "token" }, "Token"),
    input,
    h("button", { type: "submit", id: "signin-submit" }, "Sign in"),
    error,
  );
  mount(root, form);
  input.focus();
}
