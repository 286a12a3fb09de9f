// Renders the math that pymdownx.arithmatex (generic mode) leaves in `.arithmatex`
// elements: \( ... \) inline, \[ ... \] as a display. An error in a formula is thrown,
// so it reaches the console (and the browser test) instead of passing unnoticed.
function renderMath(root) {
  for (const el of root.querySelectorAll(".arithmatex")) {
    const text = el.textContent.trim();
    const display = text.startsWith("\\[");
    katex.render(text.slice(2, -2), el, { displayMode: display, throwOnError: true });
  }
}

if (typeof document$ !== "undefined") {
  document$.subscribe(({ body }) => renderMath(body));
} else {
  document.addEventListener("DOMContentLoaded", () => renderMath(document.body));
}
