// The login page: its words in the chosen language, and the "wrong token" notice.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  const S = window.SIKU;
  S.apply();
  if (new URLSearchParams(window.location.search).has("failed")) {
    document.getElementById("failed").hidden = false;
  }
  document.getElementById("lang").addEventListener("click", function () {
    S.setLang(S.lang() === "zh" ? "en" : "zh");
  });
});
