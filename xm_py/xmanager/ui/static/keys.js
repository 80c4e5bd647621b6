// "/" focuses the search box, as on most sites.
document.addEventListener("keydown", function (event) {
  var search = document.getElementById("search");
  if (event.key === "/" && search && document.activeElement.tagName !== "INPUT") {
    event.preventDefault();
    search.focus();
  }
});
