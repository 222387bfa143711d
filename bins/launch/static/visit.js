// The live participant panel: the server sends the whole panel on every change (server-sent
// events); labels never carry names.
document.addEventListener("DOMContentLoaded", function () {
  var list = document.getElementById("participants");
  if (!list || !window.EventSource) { return; }
  var patient = document.getElementById("patient-banner");
  var waiting = document.getElementById("waiting-banner");
  var labels = { lobby: "In the lobby", connected: "Connected", disconnected: "Disconnected" };
  var source = new EventSource(list.getAttribute("data-events"));
  source.addEventListener("panel", function (message) {
    var panel = JSON.parse(message.data);
    while (list.firstChild) { list.removeChild(list.firstChild); }
    if (panel.participants.length === 0) {
      var empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = "Nobody has joined yet.";
      list.appendChild(empty);
    }
    panel.participants.forEach(function (p) {
      var item = document.createElement("li");
      item.className = "presence-" + p.presence;
      var who = document.createElement("span");
      who.className = "who";
      who.textContent = p.label;
      var state = document.createElement("span");
      state.className = "state";
      state.textContent = labels[p.presence] || p.presence;
      item.appendChild(who);
      item.appendChild(document.createTextNode(" "));
      item.appendChild(state);
      list.appendChild(item);
    });
    patient.hidden = !panel.patient_connected;
    patient.classList.toggle("connected", panel.patient_connected);
    waiting.hidden = !panel.patient_waiting || panel.patient_connected;
  });
});
