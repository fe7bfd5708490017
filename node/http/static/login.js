// The login page: its words in the chosen language, and the "wrong token" notice.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  const S = window.SIKU;
  S.apply();
  const query = new URLSearchParams(window.location.search);
  if (query.has("failed")) {
    document.getElementById("failed").hidden = false;
  }
  const wait = Number(query.get("wait"));
  if (Number.isInteger(wait) && wait > 0) {
    const notice = document.getElementById("locked");
    notice.textContent = S.t("login.locked", { seconds: wait });
    notice.hidden = false;
  }
  document.getElementById("lang").addEventListener("click", function () {
    S.setLang(S.lang() === "zh" ? "en" : "zh");
  });
});
