/* libjpeg-turbo coefficient reader: written by the reader work. */
