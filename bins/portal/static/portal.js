// Copy buttons for the integration records: an enhancement only. Without JavaScript the buttons
// stay hidden and every value remains visible and selectable.
document.querySelectorAll("button.copy[data-copy-target]").forEach(function (button) {
  if (!navigator.clipboard) { return; }
  button.hidden = false;
  button.addEventListener("click", function () {
    var target = document.getElementById(button.getAttribute("data-copy-target"));
    if (!target) { return; }
    navigator.clipboard.writeText(target.textContent).then(function () {
      var label = button.firstChild;
      label.textContent = "Copied";
      setTimeout(function () { label.textContent = "Copy"; }, 2000);
    });
  });
});
