#!/bin/sh
test -f /var/www/hello-web/index.html
