#!/bin/sh
echo "hello-web $(cat /var/www/hello-web/VERSION 2>/dev/null) started"
