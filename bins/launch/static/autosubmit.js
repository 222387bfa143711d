// Sends the EHR sign-in form at once (the page also works without JavaScript: select Continue).
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("authorize");
  if (form) { form.submit(); }
});
